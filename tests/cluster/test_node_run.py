"""`shoal node run` runs exactly one node in the foreground: it binds to that node's address
from cluster.yml, needs only this host's own secrets from the environment, answers /readyz,
and stops on SIGTERM (it leaves, logs `node_stopped`, exits 0).

Given a cluster.yml naming two nodes on different addresses (127.0.0.2 and 127.0.0.3, both on
this machine's loopback) and an external S3 endpoint (the real embedded server, started apart),
when each node is run by its own `shoal node run` process (as on two hosts), then each answers
/readyz on its own address only, and SIGTERM ends n2's process within a bound (n1 sees it `left`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import ACCESS_KEY, SECRET_KEY
from harness import pick_ports, stop_process_group, wait_process_ready

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND = 15.0  # seconds from SIGTERM to exit (the node gives gossip 3 s to leave)


def _config(tmp_path: Path, endpoint: str) -> tuple[Path, dict[str, str]]:
    p = pick_ports(4)
    doc = {"cluster": "node-run", "profile": "local", "state_dir": "st",
           "nodes": [{"id": "n1", "host": "127.0.0.3", "http_port": p[0], "gossip_port": p[1]},
                     {"id": "n2", "host": "127.0.0.2", "http_port": p[2], "gossip_port": p[3]}],
           "seeds": ["n1"],
           "storage": {"endpoint": endpoint, "bucket": "node-run"}}
    path = tmp_path / "cluster.yml"
    path.write_text(yaml.safe_dump(doc))
    return path, {"n1": f"http://127.0.0.3:{p[0]}", "n2": f"http://127.0.0.2:{p[2]}"}


def _host_env() -> dict[str, str]:
    """What one host's environment file holds: its secrets, nothing of the other hosts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "AWS_"))}
    env.update(SHOAL_TOKEN="t" * 32, SHOAL_CLUSTER_KEY="k" * 32, AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=SECRET_KEY, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x))
    return env


def _node_run(cfg: Path, node_id: str, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "cli.main", "node", "run", "--config",
                                 str(cfg), "--node", node_id], env=_host_env(), cwd=cfg.parent,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _events(log_path: Path) -> list[str]:
    return [json.loads(ln)["event"] for ln in log_path.read_text().splitlines()
            if ln.startswith("{")]


def test_node_run_serves_one_node_on_its_address_and_stops_on_sigterm(tmp_path, s3_server):
    # given two "hosts", each running its own node with `shoal node run`
    cfg, urls = _config(tmp_path, s3_server.endpoint)
    logs = {n: tmp_path / f"{n}.log" for n in urls}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for n in ("n1", "n2"):
            procs[n] = _node_run(cfg, n, logs[n])
        with httpx.Client(timeout=2) as http:
            for n in ("n1", "n2"):
                wait_process_ready(http, urls[n], procs[n], logs[n])
            # then each process is exactly its own node, bound to its own address only
            assert http.get(urls["n2"] + "/v1/node").json()["id"] == "n2"
            port = int(urls["n2"].rsplit(":", 1)[1])
            with pytest.raises(httpx.ConnectError):
                http.get(f"http://127.0.0.1:{port}/healthz")
            members = http.get(urls["n1"] + "/v1/cluster/members").json()["members"]
            assert {m["id"] for m in members if m["state"] == "alive"} == {"n1", "n2"}

            # when n2's process gets SIGTERM (systemd's stop), then it leaves and exits 0 in time
            t0 = time.monotonic()
            procs["n2"].send_signal(signal.SIGTERM)  # the process itself is the node
            code = procs["n2"].wait(STOP_BOUND)
            assert code == 0, logs["n2"].read_text()
            assert time.monotonic() - t0 < STOP_BOUND
            deadline = time.monotonic() + 10
            while True:
                members = http.get(urls["n1"] + "/v1/cluster/members").json()["members"]
                if {m["id"]: m["state"] for m in members}.get("n2") == "left":
                    break
                assert time.monotonic() < deadline, members
                time.sleep(0.2)
    finally:
        for proc in procs.values():
            stop_process_group(proc, STOP_BOUND)
    events = _events(logs["n2"])
    assert "node_serving" in events and "node_stopping" in events and events[-1] == "node_stopped"


def test_node_run_refuses_embedded_storage_with_the_reason(tmp_path):
    p = pick_ports(2)
    cfg = tmp_path / "cluster.yml"
    cfg.write_text(yaml.safe_dump({"nodes": [{"id": "n1", "host": "127.0.0.1", "http_port": p[0],
                                              "gossip_port": p[1]}], "auth": "none"}))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "cli.main", "node", "run", "--config", str(cfg),
                           "--node", "n1"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: `shoal node run` needs an S3 endpoint")
    done = subprocess.run([sys.executable, "-m", "cli.main", "node", "run", "--config", str(cfg),
                           "--node", "n9"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no node 'n9'" in done.stderr
