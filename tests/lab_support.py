"""Shared by the lab tests: whether the machine makes namespaces, a free subnet, a lab fixture,
polling a lab over HTTP until a condition holds, and a video uploaded to it and ready.

    with lab_for_test(tmp_path, "t") as lab:   # skips (printing why) only where the machine
        lab.up()                               # refuses a network namespace; always torn down
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

import pytest

from cli.lab import Lab, LabPlan
from cli.lab import net as labnet
from cli.launcher import load_or_create_secrets
from conftest import TEST_LADDER

__all__ = ["namespace_refusal", "free_subnet", "lab_for_test", "poll_until", "node_urls", "auth_header",
           "wait_ready", "upload_ready"]


def namespace_refusal() -> str | None:
    """Why this machine cannot make a network namespace, or None when it can."""
    if os.geteuid() != 0:
        return "not root: the lab needs to create network namespaces"
    probe = f"slabp{os.getpid() % 1000}-probe"
    try:
        done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return "`ip` (iproute2) is not installed"
    if done.returncode != 0:
        return f"the machine refuses a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, timeout=10)
    return None


def free_subnet(rng: random.Random) -> str:
    """A 10.213.x.0/24 that overlaps no route of this machine (labs of other tests included)."""
    used = [r for r in labnet.addresses_in_use() if r[0].isdigit()]
    for _ in range(200):
        net = ipaddress.ip_network(f"10.213.{rng.randint(100, 250)}.0/24")
        if not any(ipaddress.ip_network(r, strict=False).overlaps(net) for r in used):
            return str(net)
    raise AssertionError("no free 10.213.x.0/24 on this machine")


@contextlib.contextmanager
def lab_for_test(tmp_path: Path, letter: str, hosts: int = 3,
                 overrides: dict | None = None) -> Iterator[Lab]:
    """A lab named ``<letter>`` + 3 random characters with the test ladder (and ``overrides`` of
    its cluster.yml); ``down`` always runs."""
    reason = namespace_refusal()
    if reason:
        print(f"skipping the lab test: {reason}")
        pytest.skip(reason)
    rng = random.Random()
    name = letter + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(3))
    lab = Lab.create(name, hosts, free_subnet(rng), tmp_path / "lab", die_with_parent=True,
                     overrides={"ladder": TEST_LADDER, **(overrides or {})})
    try:
        yield lab
    finally:
        lab.down()  # idempotent: a passing test's own `down` already ran


def poll_until(what: Callable[[], Any], until: Callable[[Any], bool], timeout: float,
               interval: float = 0.2) -> Any:
    """``what()`` every ``interval`` s until ``until`` holds of its answer; HTTP errors and
    undecodable answers count as not yet.  Fails the test after ``timeout`` s, naming the last."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = what()
        except (httpx.HTTPError, ValueError) as e:
            last = e
        else:
            if until(last):
                return last
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:.0f} s; last: {last}")


def node_urls(plan: LabPlan) -> dict[str, str]:
    """Each node host's API URL, by node id."""
    return {plan.node_id(h): f"http://{h.addr}:8000" for h in plan.node_hosts}


def auth_header(plan: LabPlan) -> dict[str, str]:
    """The lab's API token as an Authorization header."""
    return {"Authorization": f"Bearer {load_or_create_secrets(plan.state_dir / 'secrets.json').token}"}


def wait_ready(http: httpx.Client, url: str, vid: str, timeout: float) -> dict:
    """The video's record once it is no longer processing, asserted ``ready``."""
    rec = poll_until(lambda: http.get(f"{url}/v1/videos/{vid}").json(),
                     lambda r: r.get("state") in ("ready", "failed"), timeout, interval=0.3)
    assert rec["state"] == "ready", rec
    return rec


def upload_ready(http: httpx.Client, url: str, src: Path, auth: dict[str, str], timeout: float) -> tuple[str, str]:
    """Uploads ``src`` (named by its file name) through the node at ``url`` and waits until it is
    ready: (its id, its owner as that node sees it)."""
    r = http.post(url + "/v1/videos", content=src.read_bytes(), headers={**auth, "X-Filename": src.name})
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    wait_ready(http, url, vid, timeout)
    return vid, http.get(f"{url}/v1/cluster/owner/{vid}").json()["owner"]
