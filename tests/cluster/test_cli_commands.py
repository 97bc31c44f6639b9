"""The `shoal` command line: pure formatting and parsing, the HTTP client against fake nodes
(httpx.MockTransport), the launcher's failure paths, and one run of `shoal up/status/down` on a
real cluster (node processes + embedded S3)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from cli import ApiError, Client, CliError, LaunchError, Launcher, Unreachable, load_or_create_secrets
from cli.client import api_error
from cli.demo import sample_command
from cli.main import (WAIT_FAILED, WAIT_READY, WAIT_TIMEOUT, build_parser, format_mapping,
                      format_status, format_video, main, wait_for)
from cli.progress import Progress, format_eta, format_progress
from cli.tables import format_table, human_bytes, human_duration, human_time
from harness import cluster_factory, merge, one_port_refuses, pick_ports  # noqa: F401 (fixture)
from node.config import Config

MiB = 1024 * 1024


class StreamingTransport(httpx.BaseTransport):
    """Like httpx.MockTransport, but leaves the request body unread: the handler sees the stream."""

    def __init__(self, handler):
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.handler(request)


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt


def three_nodes(**extra) -> Config:
    return Config.from_dict(merge({"nodes": [
        {"id": "n1", "host": "127.0.0.1", "http_port": 9001, "gossip_port": 9101},
        {"id": "n2", "host": "127.0.0.1", "http_port": 9002, "gossip_port": 9102},
        {"id": "n3", "host": "127.0.0.1", "http_port": 9003, "gossip_port": 9103},
    ]}, extra))


# ---- formulas ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds, text", [
    (0, "0:00"), (4.4, "0:04"), (75, "1:15"), (3725, "1:02:05"),
    (None, "--:--"), (-1, "--:--"), (float("nan"), "--:--"), (100 * 3600, "--:--"),
])
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


@pytest.mark.parametrize("done, total, elapsed, text", [
    (0, 100 * MiB, 0.0, "[........................]   0.0%  0 B / 100.0 MiB     0.0 MB/s  ETA --:--"),
    (25 * MiB, 100 * MiB, 2.0,
     "[######..................]  25.0%  25.0 MiB / 100.0 MiB    13.1 MB/s  ETA 0:06"),
    (100 * MiB, 100 * MiB, 8.0,
     "[########################] 100.0%  100.0 MiB / 100.0 MiB    13.1 MB/s  ETA 0:00"),
    (3 * MiB, None, 1.0, "3.0 MiB     3.1 MB/s"),
])
def test_format_progress(done, total, elapsed, text):
    assert format_progress(done, total, elapsed) == text


def test_progress_redraws_at_most_every_interval_on_a_terminal():
    clock, out = FakeClock(), io.StringIO()
    p = Progress(10 * MiB, stream=out, clock=clock, interval=0.1, live=True)
    for _ in range(10):  # ten updates within 50 ms: one draw
        clock.t += 0.005
        p.advance(MiB // 2)
    assert out.getvalue().count("\r") == 1
    clock.t += 0.2
    p.advance(MiB)
    assert out.getvalue().count("\r") == 2
    p.finish()
    p.finish()
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1
    assert " 60.0%" in out.getvalue().splitlines()[-1]


def test_progress_off_a_terminal_prints_only_the_final_line():
    clock, out = FakeClock(), io.StringIO()
    p = Progress(MiB, stream=out, clock=clock, live=False, label="f.mp4 ")
    p.advance(MiB // 2)
    clock.t += 1.0
    p.set(MiB)
    assert out.getvalue() == ""
    p.finish()
    assert out.getvalue() == "f.mp4 " + format_progress(MiB, MiB, 1.0) + "\n"


@pytest.mark.parametrize("n, text", [
    (None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (5 * MiB, "5.0 MiB"), (3 * 1024 * MiB, "3.0 GiB"), (2048 * 1024 ** 4, "2048.0 TiB"),
])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


@pytest.mark.parametrize("s, text", [
    (None, "-"), (3.25, "3.2s"), (59.9, "59.9s"), (125, "2m05s"), (7322, "2h02m"), (90000, "1d01h"),
])
def test_human_duration(s, text):
    assert human_duration(s) == text


@pytest.mark.parametrize("v, text", [
    (None, "-"), ("", "-"), (0, "1970-01-01 00:00:00Z"), (86400.5, "1970-01-02 00:00:00Z"),
    ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z"),
])
def test_human_time(v, text):
    assert human_time(v) == text


def test_format_table_aligns_text_left_and_numbers_right():
    text = format_table(["id", "state", "epoch"], [["a", "ready", 3], ["bbbb", None, 12]])
    assert text.splitlines() == [
        "id    state  epoch",
        "----  -----  -----",
        "a     ready      3",
        "bbbb  -         12",
    ]
    assert format_table(["x", "ok"], [[["a", "b"], True]]).splitlines()[-1] == "a,b  yes"
    with pytest.raises(ValueError):
        format_table(["a", "b"], [[1]])


def test_format_mapping_nests_ring_views():
    text = format_mapping({"version": 3, "members": ["n1", "n2"],
                           "vnodes": [{"node": "n1", "points": 160}], "empty": []})
    assert text.splitlines() == ["version: 3", "members:", "  n1, n2", "vnodes:",
                                 "  - node: n1", "    points: 160", "empty: []"]


def test_format_video_prints_the_chunks_and_progress():
    rec = {"id": "v1", "state": "processing", "progress": 0.625, "history": [],
           "chunks": [{"unit": "00000", "index": 0, "start": 0.0, "duration": 30.0,
                       "state": "committed", "node": "n2", "epoch": 1, "progress": 1.0},
                      {"unit": "audio", "index": None, "start": 0.0, "duration": 61.5,
                       "state": "claimed", "node": "n3", "epoch": 2, "progress": 0.25}]}
    text = format_video(rec, "http://h:1")
    assert "progress  62%" in text
    lines = text.split("chunks:\n", 1)[1].splitlines()
    assert lines[0].split() == ["unit", "start", "duration", "state", "node", "epoch", "progress"]
    assert [ln.split() for ln in lines[2:]] == [
        ["00000", "0", "30", "committed", "n2", "1", "100%"],
        ["audio", "0", "61.5", "claimed", "n3", "2", "25%"]]


def test_format_video_and_status():
    rec = {"id": "v1", "state": "ready", "filename": "a.mp4", "size": 2 * MiB, "created_at": 0,
           "playback": {"hls": "/v1/videos/v1/hls/master.m3u8"}, "attempts": 1,
           "renditions": [{"name": "360p", "width": 640, "height": 360, "bandwidth": 900000}],
           "history": [{"state": "ready", "at": 0, "node": "n2", "epoch": 1}]}
    text = format_video(rec, "http://h:1")
    assert "playback  http://h:1/v1/videos/v1/hls/master.m3u8" in text
    assert "size      2.0 MiB" in text and "error     -" in text
    assert "360p    640     360     900000" in text
    assert "ready  1970-01-01 00:00:00Z  n2        1" in text
    st = {"nodes": [{"id": "n1", "url": "u", "pid": 7, "running": True, "healthz": True,
                     "readyz": False, "info": {"uptime": 125}},
                    {"id": "n2", "url": "u", "pid": None, "running": False, "healthz": False,
                     "readyz": False, "info": None}],
          "storage": {"endpoint": "http://s", "embedded": True, "bucket": "b", "reachable": False,
                      "pid": None}}
    lines = format_status(st).splitlines()
    assert lines[2].split("  ")[-2:] == ["up, not ready", "2m05s"]
    assert "not running" in lines[3]
    assert lines[-1] == "storage: embedded http://s bucket b: UNREACHABLE"


def test_sample_command_makes_test_pattern_with_sound():
    cmd = sample_command("ffmpeg", Path("/x/s.mp4"), seconds=10, size="640x360")
    assert cmd[0] == "ffmpeg" and cmd[-1] == "/x/s.mp4"
    assert "testsrc2=size=640x360:rate=30:duration=10" in cmd
    assert any(a.startswith("sine=") for a in cmd) and "libx264" in cmd and "aac" in cmd


# ---- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["--config", "c.yml", "--node", "n2", "--json", "videos", "--state", "ready"],
    ["videos", "--config", "c.yml", "--node", "n2", "--json", "--state", "ready"],
    ["--json", "videos", "--node", "n2", "--state", "ready", "--config", "c.yml"],
])
def test_common_options_before_or_after_the_command(argv):
    a = build_parser().parse_args(argv)
    assert (a.config, a.node, a.json, a.command, a.state) == ("c.yml", "n2", True, "videos", "ready")


def test_parser_defaults():
    a = build_parser().parse_args(["upload", "f.mp4"])
    assert (a.config, a.node, a.json, a.resumable, a.idempotency_key) == (None, None, False, False, None)
    a = build_parser().parse_args(["wait", "v1", "--timeout", "5"])
    assert (a.video, a.timeout, a.interval) == ("v1", 5.0, 0.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


def test_expected_failures_print_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SHOAL_CONFIG", raising=False)
    assert main(["--config", str(tmp_path / "none.yml"), "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: config:") and "no such file" in err and "Traceback" not in err
    cfg = tmp_path / "cluster.yml"
    port = pick_ports(1)[0]  # nothing listens there
    cfg.write_text(yaml.safe_dump({"nodes": [{"id": "n1", "host": "127.0.0.1", "http_port": port,
                                              "gossip_port": port}]}))
    assert main(["--config", str(cfg), "upload", str(tmp_path / "missing.mp4")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.mp4'}: not a file\n"
    assert main(["--config", str(cfg), "videos"]) == 1
    assert capsys.readouterr().err.startswith("error: no node answered: n1 (")
    assert main(["--config", str(cfg), "--node", "n9", "videos"]) == 1
    assert "no node 'n9'" in capsys.readouterr().err
    assert main(["--config", str(cfg), "token"]) == 1
    assert "run `shoal up` first" in capsys.readouterr().err


# ---- the client against fake nodes ------------------------------------------------------------------
def test_api_error_reads_the_contract_shape():
    e = api_error(httpx.Response(503, json={"error": {"code": "storage_unavailable",
                                                      "message": "storage is down"}},
                                 headers={"Retry-After": "2"}))
    assert (e.status, e.code, e.detail, e.retry_after) == (503, "storage_unavailable", "storage is down", 2.0)
    assert str(e) == "storage is down (storage_unavailable, HTTP 503)"
    e = api_error(httpx.Response(502, text="Bad gateway from proxy"))
    assert (e.code, str(e)) == ("http_502", "Bad Gateway: Bad gateway from proxy (http_502, HTTP 502)")


def test_reads_move_on_to_the_next_node_and_remember_it():
    seen: list[int] = []
    c = Client(three_nodes(), transport=one_port_refuses(
        9001, seen, lambda req: httpx.Response(200, json={"videos": [], "next": None})))
    assert c.get_json("/v1/videos", {"state": "ready", "limit": None}) == {"videos": [], "next": None}
    assert c.get_json("/v1/videos") == {"videos": [], "next": None}
    assert seen == [9001, 9002, 9002]


def test_errors_from_a_node_are_raised_not_retried():
    calls = []

    def handler(req):
        calls.append(req)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such video"}})

    c = Client(three_nodes(), transport=httpx.MockTransport(handler))
    with pytest.raises(ApiError) as ei:
        c.get_json("/v1/videos/zz")
    assert ei.value.code == "not_found" and len(calls) == 1
    down = Client(three_nodes(), node="n3", transport=httpx.MockTransport(
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("Connection refused"))))
    with pytest.raises(Unreachable, match=r"^no node answered: n3 \(http://127.0.0.1:9003\): connection refused$"):
        down.get_json("/v1/videos")


def test_upload_streams_the_file_and_retries_with_the_same_key(tmp_path):
    f = tmp_path / "clip.mp4"
    f.write_bytes(os.urandom(3 * MiB + 5))
    requests = []

    def handler(req: httpx.Request) -> httpx.Response:
        chunks = list(req.stream)  # the body arrives as the client's generator yields it
        requests.append((req, chunks))
        if req.url.port == 9001:
            raise httpx.RemoteProtocolError("peer closed connection")
        return httpx.Response(201, json={"id": "v1", "state": "uploaded"})

    clock, out = FakeClock(), io.StringIO()
    progress = Progress(f.stat().st_size, stream=out, clock=clock, live=False)
    c = Client(three_nodes(), token="tok", transport=StreamingTransport(handler), sleep=clock.sleep)
    assert c.upload(f, progress=progress) == {"id": "v1", "state": "uploaded"}
    (r1, c1), (r2, c2) = requests
    assert b"".join(c2) == f.read_bytes() and len(c2) == 4 and max(map(len, c2)) == MiB
    assert r2.url == "http://127.0.0.1:9002/v1/videos"
    assert r2.headers["Content-Length"] == str(3 * MiB + 5)
    assert r2.headers["Authorization"] == "Bearer tok"
    assert r2.headers["X-Filename"] == "clip.mp4"
    assert r1.headers["Idempotency-Key"] == r2.headers["Idempotency-Key"] != ""
    assert progress.done == f.stat().st_size


def test_upload_gives_up_after_bounded_attempts(tmp_path):
    f = tmp_path / "a.mp4"
    f.write_bytes(b"x" * 10)
    clock = FakeClock()
    c = Client(three_nodes(), transport=httpx.MockTransport(
        lambda r: httpx.Response(503, json={"error": {"code": "storage_unavailable", "message": "down"}},
                                 headers={"Retry-After": "1"})), sleep=clock.sleep)
    with pytest.raises(ApiError, match="storage_unavailable"):
        c.upload(f, idempotency_key="k", attempts=3)
    assert clock.t == 102.0  # slept Retry-After twice, then reported the third answer


class FakeTus:
    """Two-node tus server sharing one upload; n1 dies after its first chunk."""

    def __init__(self):
        self.data = bytearray()
        self.length = None
        self.n1_patches = 0
        self.log = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        node = {9001: "n1", 9002: "n2", 9003: "n3"}[req.url.port]
        self.log.append((node, req.method))
        if node == "n1" and self.n1_patches >= 1 and req.method != "POST":
            raise httpx.ConnectError("Connection refused")
        if req.method == "GET":
            return httpx.Response(200, json={"id": "vid1", "state": "uploaded", "size": len(self.data)})
        assert req.headers["Tus-Resumable"] == "1.0.0"
        if req.method == "POST":
            self.length = int(req.headers["Upload-Length"])
            assert base64.b64decode(req.headers["Upload-Metadata"].split()[1]) == b"big.mp4"
            return httpx.Response(201, headers={"Location": "http://127.0.0.1:9001/v1/uploads/vid1"})
        if req.method == "HEAD":
            return httpx.Response(200, headers={"Upload-Offset": str(len(self.data))})
        if req.method == "PATCH":
            body = req.read()
            assert req.headers["Content-Type"] == "application/offset+octet-stream"
            algo, digest = req.headers["Upload-Checksum"].split()
            assert algo == "sha1" and base64.b64decode(digest) == hashlib.sha1(body).digest()
            if int(req.headers["Upload-Offset"]) != len(self.data):
                return httpx.Response(409, json={"error": {"code": "offset_mismatch", "message": "x"}})
            self.data += body
            if node == "n1":
                self.n1_patches += 1
            return httpx.Response(204, headers={"Upload-Offset": str(len(self.data))})
        raise AssertionError(req.method)


def test_resumable_upload_continues_on_another_node(tmp_path):
    f = tmp_path / "big.mp4"
    f.write_bytes(os.urandom(5 * MiB + 123))
    tus, clock = FakeTus(), FakeClock()
    progress = Progress(f.stat().st_size, stream=io.StringIO(), clock=clock, live=False)
    notes = []
    c = Client(three_nodes(), token="t", transport=httpx.MockTransport(tus), sleep=clock.sleep,
               notice=notes.append)
    rec = c.upload_resumable(f, chunk_size=2 * MiB, progress=progress)
    assert notes == [f"n1: connection refused; resuming at byte {2 * MiB} on n2"]
    assert rec == {"id": "vid1", "state": "uploaded", "size": f.stat().st_size}
    assert bytes(tus.data) == f.read_bytes()
    assert tus.log == [("n1", "POST"), ("n1", "PATCH"), ("n1", "PATCH"), ("n2", "HEAD"),
                       ("n2", "PATCH"), ("n2", "PATCH"), ("n2", "GET")]
    assert progress.done == f.stat().st_size


def test_resumable_upload_failures_are_bounded(tmp_path):
    f = tmp_path / "big.mp4"
    f.write_bytes(b"y" * 100)

    def handler(req):
        if req.method == "POST":
            return httpx.Response(201, headers={"Location": "/v1/uploads/vid9"})
        if req.method == "HEAD":
            return httpx.Response(200, headers={"Upload-Offset": "0"})
        return httpx.Response(503, json={"error": {"code": "storage_unavailable", "message": "down"}})

    clock = FakeClock()
    c = Client(three_nodes(), transport=httpx.MockTransport(handler), sleep=clock.sleep)
    with pytest.raises(Unreachable, match=r"vid9 stopped at byte 0 of 100 after 4 failures"):
        c.upload_resumable(f, max_failures=3)


def test_wait_for_exit_codes():
    class Fake:
        def __init__(self, states):
            self.states = list(states)

        def get_json(self, path):
            return {"id": "v", "state": self.states.pop(0) if len(self.states) > 1 else self.states[0]}

    for states, code in [(["uploaded", "processing", "ready"], WAIT_READY),
                         (["processing", "failed"], WAIT_FAILED),
                         (["deleted"], WAIT_FAILED),
                         (["processing"], WAIT_TIMEOUT)]:
        clock, seen = FakeClock(), []
        got, rec = wait_for(Fake(states), "v", timeout=10, interval=0.5, clock=clock,
                            sleep=clock.sleep, on_state=seen.append)
        assert got == code and rec["state"] == states[-1]
        assert seen == states
    assert clock.t == 110.0  # the timeout case polled until the deadline, not beyond


# ---- launcher without a cluster ----------------------------------------------------------------------
def test_secrets_are_created_once_private_and_stable(tmp_path):
    path = tmp_path / "st" / "secrets.json"
    s1 = load_or_create_secrets(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secrets(path) == s1
    assert len({s1.token, s1.cluster_key, s1.s3_access_key, s1.s3_secret_key}) == 4
    path.write_text("{not json")
    with pytest.raises(LaunchError, match="damaged"):
        load_or_create_secrets(path)


def write_config(tmp_path: Path, ports: list[int], storage: dict | None = None) -> Path:
    doc = {"profile": "local", "state_dir": "st",
           "nodes": [{"id": f"n{i + 1}", "host": "127.0.0.1", "http_port": ports[2 * i],
                      "gossip_port": ports[2 * i + 1]} for i in range(len(ports) // 2)],
           "storage": storage or {"endpoint": "http://127.0.0.1:9", "bucket": "shoal"}}
    path = tmp_path / "cluster.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_launcher_env_carries_the_secrets(tmp_path):
    ports = pick_ports(3)
    launch = Launcher(write_config(tmp_path, ports[:2], {"embedded_port": ports[2]}))
    env, s = launch.env("n1"), launch.secrets()
    assert (env["SHOAL_TOKEN"], env["SHOAL_CLUSTER_KEY"]) == (s.token, s.cluster_key)
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (s.s3_access_key, s.s3_secret_key)
    assert launch.node_command("n1")[1:] == ["-m", "node", "--config", str(launch.config_path), "--node", "n1"]


def test_launcher_refuses_a_taken_port(tmp_path):
    ports = pick_ports(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))
        s.listen()
        launch = Launcher(write_config(tmp_path, ports))
        with pytest.raises(LaunchError, match=rf"HTTP port 127.0.0.1:{ports[0]} of node n1 is in use"):
            launch.up(timeout=5)
    assert launch.pid("n1") is None


def test_launcher_reports_a_node_that_dies_while_starting(tmp_path, monkeypatch):
    launch = Launcher(write_config(tmp_path, pick_ports(2)))
    monkeypatch.setattr(launch, "node_command", lambda node_id: [
        sys.executable, "-c", "import sys; print('cannot bind: boom', file=sys.stderr); sys.exit(3)"])
    with pytest.raises(LaunchError) as ei:
        launch.up(timeout=20)
    assert "node n1 exited with code 3 while starting" in str(ei.value)
    assert "cannot bind: boom" in str(ei.value)
    assert launch.pid("n1") is None and not launch.pid_path("n1").exists()


def test_stale_pid_file_is_ignored(tmp_path):
    launch = Launcher(write_config(tmp_path, pick_ports(2)))
    launch.pid_path("n1").parent.mkdir(parents=True)
    launch.pid_path("n1").write_text(f"{os.getpid()}\n")  # alive, but not a node process
    assert launch.pid("n1") is None and not launch.pid_path("n1").exists()
    assert launch.kill("n1") is False


# ---- a real cluster through the command line ----------------------------------------------------------
def shoal(cfg: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parents[2])


@pytest.mark.cluster
def test_shoal_up_status_kill_restart_stop_down(tmp_path):
    ports = pick_ports(5)
    cfg = write_config(tmp_path, ports[:4], {"endpoint": "embedded", "bucket": "shoal",
                                             "embedded_port": ports[4]})
    try:
        up = shoal(cfg, "up", "--timeout", "60")
        assert up.returncode == 0, up.stderr
        assert "ready" in up.stdout and "reachable" in up.stdout
        again = shoal(cfg, "up")
        assert again.returncode == 0 and "already running" in again.stderr
        st = json.loads(shoal(cfg, "status", "--json").stdout)
        assert [(n["id"], n["running"], n["healthz"], n["readyz"]) for n in st["nodes"]] == [
            ("n1", True, True, True), ("n2", True, True, True)]
        assert st["storage"]["reachable"] is True and st["storage"]["pid"]
        pids = [n["pid"] for n in st["nodes"]] + [st["storage"]["pid"]]
        token = shoal(cfg, "token", "--json")
        assert json.loads(token.stdout)["token"] == Launcher(cfg).secrets().token

        assert shoal(cfg, "kill", "n2").returncode == 0
        st = json.loads(shoal(cfg, "status", "--json").stdout)
        assert [n["readyz"] for n in st["nodes"]] == [True, False]
        assert not psutil.pid_exists(pids[1]) or psutil.Process(pids[1]).status() == psutil.STATUS_ZOMBIE
        assert shoal(cfg, "restart", "n2").returncode == 0
        st = json.loads(shoal(cfg, "status", "--json").stdout)
        assert [n["readyz"] for n in st["nodes"]] == [True, True]
        pids.append(st["nodes"][1]["pid"])
        assert shoal(cfg, "stop", "n2").returncode == 0  # graceful
        assert not psutil.pid_exists(pids[-1]) or psutil.Process(pids[-1]).status() == psutil.STATUS_ZOMBIE

        down = shoal(cfg, "down")
        assert down.returncode == 0 and "stopped n1, storage" in down.stderr
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                       for p in pids)
        st = json.loads(shoal(cfg, "status", "--json").stdout)
        assert not any(n["healthz"] for n in st["nodes"]) and st["storage"]["reachable"] is False
    finally:
        Launcher(cfg).down()


@pytest.mark.cluster
def test_harness_controls_every_process_and_cleans_up(cluster_factory):
    c = cluster_factory(nodes=1)
    url = c.url("n1")
    assert httpx.get(url + "/readyz").status_code == 200
    assert c.s3_endpoint.startswith("http://127.0.0.1:") and c.bucket == "shoal-test"
    assert "node_serving" in [line["event"] for line in c.log_lines("n1")]
    pids = [c.pid("n1"), c.launcher.pid("storage")]

    c.pause("n1")  # hangs: the socket accepts nothing
    with pytest.raises(httpx.TimeoutException):
        httpx.get(url + "/healthz", timeout=0.5)
    c.resume("n1")
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200

    c.stop_storage(signal.SIGKILL)
    wait_until(lambda: httpx.get(url + "/readyz").status_code == 503, 15)
    c.start_storage()
    wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, 15)
    pids.append(c.launcher.pid("storage"))

    c.kill("n1")
    assert c.pid("n1") is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz")
    c.restart("n1")
    pids.append(c.pid("n1"))
    assert [line["event"] for line in c.log_lines("n1")].count("launcher_start") == 2
    c.close()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


@pytest.mark.parametrize("offsets", [
    [0, 4, 8, 9],          # straight through: each chunk was read ahead
    [0, 4, 2, 6, 9],       # a resume at another offset: read afresh, then ahead again
    [0, 0, 4],             # the same chunk again (a failed PATCH retried)
])
def test_chunk_reader_reads_ahead_and_follows_resumes(tmp_path, offsets):
    from cli.client import ChunkReader
    data = bytes(range(10))
    f = tmp_path / "f.bin"
    f.write_bytes(data)
    with ChunkReader(f, len(data), 4) as r:
        for off in offsets:
            ahead = r._next
            chunk, digest = r.at(off)
            assert chunk == data[off:off + 4] and digest == hashlib.sha1(chunk).digest()
            if ahead is not None and ahead[0] == off:
                assert ahead[1].done()  # served from the read-ahead
            assert (r._next is None) == (off + len(chunk) >= len(data))


# ---- URLs only, delete, status and members --state on a real cluster -----------------------------------
def shoal_in(cwd: Path, *args: str, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    """`shoal` run in ``cwd`` (no cluster.yml there) with only ``env`` of the SHOAL_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**base, **(env or {})})


@pytest.mark.cluster
def test_urls_only_delete_status_and_dead_members(cluster_factory, tmp_path):
    c = cluster_factory(nodes=3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not (elsewhere / "cluster.yml").exists()
    url = {"SHOAL_URL": c.url("n1")}
    env = {**url, "SHOAL_TOKEN": c.token}

    # reads over HTTP with just a URL, from a directory without cluster.yml
    st = shoal_in(elsewhere, "status", env=url)
    assert st.returncode == 0, st.stderr
    assert [line.split()[0] for line in st.stdout.splitlines()[2:5]] == ["n1", "n2", "n3"]
    assert "storage, as the nodes report it: reachable" in st.stdout and st.stderr == ""
    members = shoal_in(elsewhere, "members", "--json", "--url", c.url("n2"))
    assert members.returncode == 0, members.stderr
    assert json.loads(members.stdout)["self"] == "n2"
    assert shoal_in(elsewhere, "ring", env=url).returncode == 0
    for refused in (["up"], ["down"], ["kill", "n1"], ["restart", "n1"]):
        r = shoal_in(elsewhere, *refused, env=env)
        assert r.returncode == 1 and "needs a cluster.yml" in r.stderr and "Traceback" not in r.stderr

    # delete: an uploaded video, with the token from $SHOAL_TOKEN
    path = tmp_path / "clip.bin"
    path.write_bytes(b"not a video at all" * 100)
    up = shoal_in(elsewhere, "upload", str(path), env=env)
    assert up.returncode == 0, up.stderr
    vid = up.stdout.strip()
    owner = shoal_in(elsewhere, "owner", vid, env=url)
    assert owner.returncode == 0 and owner.stdout.startswith("owner:")
    play = shoal_in(elsewhere, "play", vid, "--json", env=url)
    assert json.loads(play.stdout)["urls"] == [f"{c.url('n1')}/v1/videos/{vid}/hls/master.m3u8"]
    no_token = shoal_in(elsewhere, "delete", vid, env=url)
    assert no_token.returncode == 1 and no_token.stdout == ""
    assert no_token.stderr.startswith("error: ") and "(unauthorized, HTTP 401)" in no_token.stderr
    gone = shoal_in(elsewhere, "delete", vid, env=env)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout == f"deleted {vid} (state deleted)\n"
    rec = json.loads(shoal_in(elsewhere, "video", vid, "--json", "--url", c.url("n3"), env=url).stdout)
    assert rec["state"] == "deleted"
    assert httpx.get(f"{c.url('n2')}/v1/videos/{vid}").json()["state"] == "deleted"
    missing = shoal_in(elsewhere, "delete", "a" * 26, env=env)
    assert missing.returncode == 1
    assert missing.stderr == "error: no such video (not_found, HTTP 404)\n"

    # a node killed: status exits 1 and says which and why, with a URL and with cluster.yml
    c.kill("n3")
    down = shoal_in(elsewhere, "status", "--json", env=url)
    assert down.returncode == 1
    doc = json.loads(down.stdout)
    assert [(n["id"], n["readyz"]) for n in doc["nodes"]] == [("n1", True), ("n2", True), ("n3", False)]
    n3 = f"node n3 ({c.url('n3')}) is down: GET /healthz: connection refused"
    assert any(p.startswith(n3) for p in doc["problems"])
    assert f"error: {n3}" in down.stderr
    local = shoal(c.config_path, "status")
    assert local.returncode == 1
    assert local.stderr == f"error: {n3}\n"
    assert "not running" in local.stdout

    # members --state dead: only n3, once gossip declared it dead (bounded wait)
    deadline = time.monotonic() + 30
    while True:
        dead = shoal_in(elsewhere, "members", "--state", "dead", "--json", env=url)
        assert dead.returncode == 0, dead.stderr
        ids = [m["id"] for m in json.loads(dead.stdout)["members"]]
        if ids == ["n3"]:
            break
        assert ids == [] and time.monotonic() < deadline, f"n3 not dead in time: {dead.stdout}"
        time.sleep(0.5)
    text = shoal_in(elsewhere, "members", "--state", "dead", env=url)
    rows = text.stdout.splitlines()
    assert rows[0] == "as seen by n1:" and len(rows) == 4 and rows[3].split()[:2] == ["n3", "dead"]
    alive = shoal_in(elsewhere, "members", "--state", "alive", "--json", env=url)
    assert sorted(m["id"] for m in json.loads(alive.stdout)["members"]) == ["n1", "n2"]
