"""A node process refuses to start without its token and cluster key (exit 2, a clear message)
unless cluster.yml says `auth: none`; then it starts, warns once, and stays open.

Real node processes (`python -m node`, as the launcher runs them) against the real embedded S3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from conftest import ACCESS_KEY, SECRET_KEY
from harness import pick_ports, stop_process_group, wait_process_ready

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, endpoint: str, **extra) -> Path:
    http_port, gossip_port = pick_ports(2)
    doc = {"profile": "local", "state_dir": "st", "cluster": "secrets-test",
           "nodes": [{"id": "n1", "host": "127.0.0.1", "http_port": http_port, "gossip_port": gossip_port}],
           "storage": {"endpoint": endpoint, "bucket": "secrets"}, **extra}
    path = tmp_path / "cluster.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def node_env(**secrets: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p), **secrets)
    return env


def run_node(cfg: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "--node", "n1"],
                          env=env, cwd=cfg.parent, capture_output=True, text=True, timeout=60)


def test_a_node_without_token_or_key_exits_2_with_the_reason(tmp_path, s3_server):
    cfg = write_config(tmp_path, s3_server.endpoint)
    for secrets, missing in [({}, ["$SHOAL_TOKEN", "$SHOAL_CLUSTER_KEY"]),
                             ({"SHOAL_TOKEN": "t" * 32}, ["$SHOAL_CLUSTER_KEY"]),
                             ({"SHOAL_CLUSTER_KEY": "k" * 32}, ["$SHOAL_TOKEN"])]:
        done = run_node(cfg, node_env(**secrets))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("shoal node: ")
        for name in missing:
            assert name in done.stderr
        assert "auth: none" in done.stderr and "Traceback" not in done.stderr


def test_a_node_under_auth_none_starts_warns_and_stays_open(tmp_path, s3_server):
    cfg = write_config(tmp_path, s3_server.endpoint, auth="none")
    url = "http://127.0.0.1:{}".format(yaml.safe_load(cfg.read_text())["nodes"][0]["http_port"])
    log_path = tmp_path / "n1.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "--node", "n1"],
                                env=node_env(), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        with httpx.Client(timeout=2) as http:
            wait_process_ready(http, url, proc, log_path)
            # Open on purpose: a write without a token is accepted.
            r = http.post(url + "/v1/videos", content=b"not a video", headers={"X-Filename": "a.mp4"})
            assert r.status_code in (200, 201, 202), r.text
    finally:
        stop_process_group(proc)
    lines = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.startswith("{")]
    warnings = [ln for ln in lines if ln["event"] == "auth_none"]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning" and warnings[0]["node"] == "n1"
    assert warnings[0]["missing"] == ["SHOAL_TOKEN", "SHOAL_CLUSTER_KEY"]
    assert any(ln["event"] == "gossip_unkeyed" for ln in lines)
