"""Real clusters for integration tests: node processes and an embedded S3 server on free ports.

    def test_something(cluster_factory):
        c = cluster_factory(nodes=3, overrides={"timing": {"lease_seconds": 3}})
        r = upload(c, "n1", b"...")                     # POST /v1/videos with the token
        rec = wait_state(c, "n2", r.json()["id"], "ready", timeout=60)
        c.kill("n1"); c.restart("n1"); c.pause("n2"); c.resume("n2")
        c.stop_storage(signal.SIGKILL); c.start_storage()
        events = [line["event"] for line in c.log_lines("n1")]

A :class:`Cluster` writes its own ``cluster.yml`` (``profile: local``, every port free, its own
state dir) into a tmp dir and runs it with :class:`cli.Launcher`, the same code as ``shoal up``.
``close()`` stops every process it started, also when the test failed (the fixture calls it in
``finally``; an ``atexit`` hook is the last resort, e.g. after KeyboardInterrupt).

To use the fixture from any test module: ``from harness import cluster_factory`` (tests/ is on
``sys.path`` through conftest.py), or add that import to conftest.py once for all modules.
"""

from __future__ import annotations

import atexit
import json
import random
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx
import pytest
import yaml

from cli import Launcher
from cli.launcher import kill_group_quietly
from node.config import Config

__all__ = ["Cluster", "cluster_factory", "upload", "wait_state", "pick_ports", "merge"]

_LIVE: "weakref.WeakSet[Cluster]" = weakref.WeakSet()
_PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range, so outgoing connections never take them


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def pick_ports(n: int, rng: random.Random | None = None) -> list[int]:
    """``n`` distinct ports free for TCP and UDP on 127.0.0.1 right now."""
    rng = rng or random.Random()
    out: list[int] = []
    while len(out) < n:
        p = rng.randint(*_PORT_RANGE)
        if p not in out and _bindable(p):
            out.append(p)
    return out


def merge(base: dict, extra: dict | None) -> dict:
    """Deep merge of YAML mappings: ``extra`` wins; nested dicts merge, lists replace."""
    out = dict(base)
    for k, v in (extra or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Cluster:
    """N nodes + embedded S3 on free ports under ``base_dir``; started unless ``start=False``."""

    def __init__(self, base_dir: Path, nodes: int = 3, overrides: dict | None = None, *,
                 start: bool = True, ready_timeout: float = 60.0, bucket: str = "shoal-test"):
        self.dir = Path(base_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        ports = pick_ports(2 * nodes + 1)
        doc = {
            "cluster": "test",
            "profile": "local",
            "state_dir": "state",
            "nodes": [{"id": f"n{i + 1}", "host": "127.0.0.1", "http_port": ports[2 * i],
                       "gossip_port": ports[2 * i + 1]} for i in range(nodes)],
            "storage": {"endpoint": "embedded", "bucket": bucket, "embedded_port": ports[-1]},
        }
        self.doc = merge(doc, overrides)
        self.config_path = self.dir / "cluster.yml"
        self.config_path.write_text(yaml.safe_dump(self.doc, sort_keys=False))
        # die_with_parent: if the test runner is killed outright, the kernel kills every process too
        self.launcher = Launcher(self.config_path, pick_free_ports=True, grace=5.0, die_with_parent=True)
        self.ready_timeout = ready_timeout
        self._closed = False
        self._paused: set[str] = set()
        _LIVE.add(self)
        if start:
            self.start()

    # ---- what tests read ----------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.launcher.cfg

    @property
    def node_ids(self) -> list[str]:
        return self.config.node_ids

    @property
    def state_dir(self) -> Path:
        return self.launcher.state_dir

    def url(self, node_id: str) -> str:
        return self.config.node(node_id).url

    @property
    def token(self) -> str:
        return self.launcher.secrets().token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    @property
    def s3_endpoint(self) -> str:
        return self.config.storage.endpoint_url()

    @property
    def bucket(self) -> str:
        return self.config.storage.bucket

    @property
    def access_key(self) -> str:
        return self.launcher.secrets().s3_access_key

    @property
    def secret_key(self) -> str:
        return self.launcher.secrets().s3_secret_key

    def pid(self, node_id: str) -> int | None:
        return self.launcher.pid(node_id)

    def log_path(self, node_id: str) -> Path:
        return self.launcher.log_path(node_id)

    def log_lines(self, node_id: str) -> list[dict]:
        """Every JSON line of the node's log, across restarts (``launcher_start`` marks each run)."""
        out = []
        try:
            text = self.log_path(node_id).read_text(errors="replace")
        except FileNotFoundError:
            return []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    # ---- what tests do ------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.launcher.up(wait=True, timeout=self.ready_timeout)
        except BaseException:
            self.close()
            raise

    def wait_ready(self, node_id: str | Iterable[str] | None = None, timeout: float | None = None) -> None:
        ids = self.node_ids if node_id is None else [node_id] if isinstance(node_id, str) else list(node_id)
        self.launcher.wait_ready(ids, timeout=timeout or self.ready_timeout)

    def kill(self, node_id: str) -> None:
        """SIGKILL the node and its children (ffmpeg): a crash."""
        self._paused.discard(node_id)
        if not self.launcher.kill(node_id):
            raise AssertionError(f"{node_id} was not running")

    def stop(self, node_id: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Send ``sig`` and wait until the node exits (SIGKILL after ``timeout``)."""
        if node_id in self._paused:
            self.resume(node_id)
        self.launcher.stop(node_id, sig, timeout=timeout)

    def start_node(self, node_id: str, wait: bool = True) -> None:
        self.launcher.start_node(node_id, wait=wait, timeout=self.ready_timeout)

    def restart(self, node_id: str, wait: bool = True) -> None:
        if node_id in self._paused:
            self.resume(node_id)
        self.launcher.restart(node_id, wait=wait, timeout=self.ready_timeout)

    def pause(self, node_id: str) -> None:
        """SIGSTOP the node's process group: it hangs without closing a socket."""
        if not self.launcher.send_signal(node_id, signal.SIGSTOP, group=True):
            raise AssertionError(f"{node_id} is not running")
        self._paused.add(node_id)

    def resume(self, node_id: str) -> None:
        self.launcher.send_signal(node_id, signal.SIGCONT, group=True)
        self._paused.discard(node_id)

    def stop_storage(self, sig: int = signal.SIGTERM) -> None:
        self.launcher.stop_storage(sig)

    def start_storage(self) -> None:
        self.launcher.start_storage()

    def close(self) -> None:
        """Stop every process this cluster started; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for node_id in list(self._paused):
            self.resume(node_id)
        try:
            self.launcher.down(storage_sig=signal.SIGKILL)  # its data is thrown away anyway
        finally:
            for name in [*self.node_ids, "storage"]:  # whatever down() could not stop
                pid = self.launcher.pid(name)
                if pid is not None:
                    self.launcher.kill(name) if name != "storage" else self.launcher.stop_storage(signal.SIGKILL)
        _LIVE.discard(self)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for c in list(_LIVE):
        try:
            c.close()
        except Exception:  # last resort at interpreter exit: keep closing the others
            pass


@pytest.fixture
def cluster_factory(tmp_path: Path):
    """``make(nodes=3, overrides=None, **kw) -> Cluster``; every cluster made is closed after the test."""
    made: list[Cluster] = []

    def make(nodes: int = 3, overrides: dict | None = None, **kw: Any) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(made)}", nodes, overrides, **kw)
        made.append(c)
        return c

    try:
        yield make
    finally:
        errors = []
        for c in made:
            try:
                c.close()
            except Exception as e:  # close the others anyway, then report
                errors.append(e)
        if errors:
            raise errors[0]


# ---- small sync helpers ---------------------------------------------------------------------------
def upload(cluster: Cluster, node: str, data: bytes | str | Path, headers: dict[str, str] | None = None,
           *, timeout: float = 120.0) -> httpx.Response:
    """``POST /v1/videos`` with the token; a path is streamed from disk with Content-Length."""
    h = cluster.headers(headers)
    url = cluster.url(node) + "/v1/videos"
    if isinstance(data, (str, Path)):
        path = Path(data)
        h.setdefault("Content-Length", str(path.stat().st_size))
        h.setdefault("X-Filename", path.name)

        def blocks():
            with open(path, "rb") as f:
                while b := f.read(1 << 20):
                    yield b
        return httpx.post(url, content=blocks(), headers=h, timeout=timeout)
    return httpx.post(url, content=data, headers=h, timeout=timeout)


def wait_state(cluster: Cluster, node: str, video_id: str, states: str | Iterable[str],
               timeout: float = 120.0, interval: float = 0.2) -> dict:
    """Poll ``GET /v1/videos/<id>`` on ``node`` until its state is one of ``states``.

    Transport errors (the node restarting) are retried until the deadline; AssertionError then,
    with the last record seen.
    """
    wanted = {states} if isinstance(states, str) else set(states)
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            r = httpx.get(f"{cluster.url(node)}/v1/videos/{video_id}", timeout=5.0)
            last = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
            if r.status_code == 200 and last.get("state") in wanted:
                return last
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise AssertionError(f"video {video_id} on {node} not in {sorted(wanted)} after "
                                 f"{timeout:.0f} s; last: {last}")
        time.sleep(interval)


def cluster_with_ready_videos(base: Path, names: Iterable[str], *, seconds: int,
                              overrides: dict | None = None, nodes: int = 3):
    """A module fixture's cluster: ``nodes`` nodes, one upload of a ``seconds``-long generated video
    per name, each waited for until ``ready``; ``cluster.videos`` maps name -> id.  A generator:
    ``yield from`` it in a fixture, and the cluster is closed when the module is done."""
    import media  # tests/media.py (ffmpeg-generated sources)
    with Cluster(base / "cluster", nodes, overrides) as c:
        src = media.make_video(base / "in.mp4", seconds=seconds)
        ids = {name: upload(c, "n1", src, {"X-Filename": f"{name}.mp4"}).json()["id"] for name in names}
        for vid in ids.values():
            wait_state(c, "n2", vid, "ready", timeout=120)
        c.videos = ids  # type: ignore[attr-defined]
        yield c


def owner_of(c: Cluster, vid: str) -> str:
    """The ring owner as the cluster says; the ring of configured nodes while nodes run without one."""
    import ring
    r = httpx.get(c.url("n1") + f"/v1/cluster/owner/{vid}")
    if r.status_code == 200:
        return r.json()["owner"]
    return ring.Ring({n: 1 for n in c.node_ids}).owner(vid)


def wait_process_ready(http: httpx.Client, url: str, proc: Any, log_path: Path, timeout: float = 60) -> None:
    """Poll ``url``/readyz until 200; fail with the node's log if ``proc`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log_path.read_text()
        try:
            if http.get(url + "/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)


def stop_process_group(proc: Any, grace: float = 15) -> None:
    """SIGTERM to ``proc``'s process group (a node started with ``start_new_session``), SIGKILL
    after ``grace`` s; nothing when it already exited."""
    if proc.poll() is not None:
        return
    kill_group_quietly(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        kill_group_quietly(proc.pid, signal.SIGKILL)
        proc.wait(10)


# ---- fake nodes for the CLI's client (no cluster) -------------------------------------------------
def one_port_refuses(port: int, seen: list[int],
                     answer: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    """Fake nodes behind one transport: the one on ``port`` refuses the connection, every other
    answers ``answer(request)``; each request's port is appended to ``seen``."""
    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.url.port)
        if req.url.port == port:
            raise httpx.ConnectError("Connection refused")
        return answer(req)
    return httpx.MockTransport(handler)
