"""Membership across real node processes (``python -m node``) over UDP on 127.0.0.1.

Local profile timing: probe 0.3 s, timeout 0.15 s; 5 nodes -> suspicion 1.2 s min, 7.2 s max.
"""

from __future__ import annotations

import re
import statistics
import time

import httpx
import pytest

from harness import cluster_factory  # noqa: F401  (fixture)

pytestmark = pytest.mark.cluster


def _members(c, node: str) -> dict[str, dict]:
    r = httpx.get(f"{c.url(node)}/v1/cluster/members", timeout=2.0)
    r.raise_for_status()
    body = r.json()
    assert body["self"] == node
    return {m["id"]: m for m in body["members"]}


def _wait(pred, timeout: float, what: str) -> float:
    """Poll ``pred`` until true; return the seconds it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            if pred():
                return time.monotonic() - t0
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s: {what} (last error: {last})")


def _all_see(c, member: str, state: str, among) -> bool:
    return all(_members(c, n).get(member, {}).get("state") == state for n in among)  # unknown yet: no


def test_five_processes_converge_kill_restart_pause(cluster_factory):  # noqa: F811
    c = cluster_factory(nodes=5)
    ids = c.node_ids
    # converge: everyone alive everywhere
    _wait(lambda: all(_all_see(c, m, "alive", ids) for m in ids), 20, "converge")
    others = [n for n in ids if n != "n3"]
    metrics = httpx.get(c.url("n1") + "/metrics", timeout=2.0).text
    assert "# TYPE shoal_gossip_health_score gauge" in metrics
    assert re.search(r"^shoal_gossip_probes_sent_total [1-9]", metrics, re.M)

    # kill -9 -> dead on every other node; measured
    old_inc = _members(c, "n1")["n3"]["incarnation"]
    c.kill("n3")
    took = _wait(lambda: _all_see(c, "n3", "dead", others), 30, "n3 dead everywhere")
    print(f"kill -9 -> dead on all 4 others: {took:.2f} s")
    assert all(_all_see(c, m, "alive", others) for m in others)  # no false deaths

    # restart -> alive again with a higher incarnation
    c.restart("n3")
    _wait(lambda: _all_see(c, "n3", "alive", ids), 30, "n3 alive again")
    assert _members(c, "n1")["n3"]["incarnation"] > old_inc

    # SIGSTOP longer than the suspicion timeout, then SIGCONT -> refutes and returns
    c.pause("n4")
    rest = [n for n in ids if n != "n4"]
    _wait(lambda: _all_see(c, "n4", "dead", rest), 30, "n4 dead while paused")
    inc = _members(c, "n1")["n4"]["incarnation"]
    c.resume("n4")
    _wait(lambda: _all_see(c, "n4", "alive", ids), 30, "n4 alive after SIGCONT")
    assert _members(c, "n1")["n4"]["incarnation"] > inc
    events = [line for line in c.log_lines("n1") if line.get("event") == "member_state"]
    assert any(e.get("member") == "n4" and e.get("state") == "dead" for e in events)


def test_median_detection_time_kill_9(cluster_factory):  # noqa: F811
    c = cluster_factory(nodes=5)
    ids = c.node_ids
    _wait(lambda: all(_all_see(c, m, "alive", ids) for m in ids), 20, "converge")
    times = []
    for victim in ("n2", "n4", "n5"):
        others = [n for n in ids if n != victim]
        c.kill(victim)
        times.append(_wait(lambda: _all_see(c, victim, "dead", others), 30, f"{victim} dead"))
        c.restart(victim)
        _wait(lambda: _all_see(c, victim, "alive", ids), 30, f"{victim} back")
    print(f"kill -9 -> dead everywhere (local profile): {times}, median {statistics.median(times):.2f} s")
    assert statistics.median(times) < 10
