"""A real node process writes one JSON object per line, its own events and its libraries' alike,
at the level cluster.yml's `log_level` sets and `$SHOAL_LOG_LEVEL` overrides (node/log.py).

Real node processes (`python -m node`, as the launcher runs them) against the real embedded S3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from harness import stop_process_group, wait_process_ready
from test_node_secrets import node_env, run_node, write_config  # same directory

SECRETS = {"SHOAL_TOKEN": "t" * 32, "SHOAL_CLUSTER_KEY": "k" * 32}


def run_until_ready(cfg: Path, env: dict[str, str], log_path: Path) -> list[str]:
    """Start the node, wait for /readyz, make a request that 404s, stop it; its output lines."""
    url = "http://127.0.0.1:{}".format(yaml.safe_load(cfg.read_text())["nodes"][0]["http_port"])
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "--node", "n1"],
                                env=env, cwd=cfg.parent, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        with httpx.Client(timeout=2) as http:
            wait_process_ready(http, url, proc, log_path)
            assert http.get(url + "/v1/videos/nosuchvideo").status_code == 404
    finally:
        stop_process_group(proc)
    return log_path.read_text().splitlines()


def json_lines(lines: list[str]) -> list[dict]:
    parsed = [json.loads(line) for line in lines]  # every line, not only those that look like JSON
    assert all(isinstance(p, dict) and {"ts", "level", "node", "event"} <= p.keys() for p in parsed)
    return parsed


def test_debug_brings_the_libraries_lines_in_as_json(tmp_path, s3_server):
    cfg = write_config(tmp_path, s3_server.endpoint, log_level="debug")
    rows = json_lines(run_until_ready(cfg, node_env(**SECRETS), tmp_path / "n1.log"))
    start = next(r for r in rows if r["event"] == "node_starting")
    assert start["log_level"] == "debug"
    libraries = {r["logger"].split(".")[0] for r in rows if r["event"] == "library_log"}
    assert "botocore" in libraries, libraries  # the storage client's requests, at debug
    assert any(r["level"] == "debug" for r in rows)


def test_the_environment_overrides_the_file(tmp_path, s3_server):
    # `auth: none` without secrets: the node's one `auth_none` warning is a line that must pass
    cfg = write_config(tmp_path, s3_server.endpoint, log_level="debug", auth="none")
    rows = json_lines(run_until_ready(cfg, node_env(SHOAL_LOG_LEVEL="warning"), tmp_path / "n1.log"))
    assert [r["event"] for r in rows if r["event"] == "auth_none"] == ["auth_none"]
    assert all(r["level"] in ("warning", "error") for r in rows), rows
    assert not any(r["event"] == "node_starting" for r in rows)


def test_a_bad_level_stops_the_node_with_exit_2(tmp_path, s3_server):
    cfg = write_config(tmp_path, s3_server.endpoint)
    done = run_node(cfg, node_env(SHOAL_LOG_LEVEL="loud", **SECRETS))
    assert done.returncode == 2
    assert "$SHOAL_LOG_LEVEL: 'loud' is not a log level" in done.stderr
    cfg = write_config(tmp_path, s3_server.endpoint, log_level="loud")
    done = run_node(cfg, node_env(**SECRETS))
    assert done.returncode == 2
    assert 'log_level: expected one of "debug", "info", "warning", "error", got "loud"' in done.stderr
