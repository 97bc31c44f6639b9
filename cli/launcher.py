"""Start, stop and inspect the processes of one ``cluster.yml`` on this machine.

Everything the launcher owns lives under the config's ``state_dir``::

    secrets.json        token, cluster key, S3 keys (generated once, mode 0600)
    pids/<node>.pid     one per running node; pids/storage.pid for the embedded S3 server
    logs/<node>.log     the node's stdout+stderr (JSON lines); logs/storage.log
    nodes/<node>/       the node's local data dir (caches, temporary files)
    s3/                 the embedded S3 server's data (0700; security.toml and tls/ fresh each start)

Every process runs in its own session (``start_new_session``), so its pid is also its process
group: SIGKILL reaches a node's ffmpeg children too, SIGTERM goes to the node alone so it can
stop gracefully. A pid file is trusted only while its process still looks like ours (psutil:
alive, not a zombie, command line names the node), so a stale file never hits a stranger.

Raises :class:`~cli.errors.LaunchError` for every expected failure (port taken, process died
during start, not ready in time), with the tail of the process's log in the message.
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import httpx
import psutil

from node.config import Config, ConfigError, NodeSpec

from .errors import LaunchError

__all__ = ["Launcher", "NodeStatus", "Secrets", "load_or_create_secrets", "STORAGE"]

STORAGE = "storage"  # the embedded S3 server's name in pids/ and logs/
_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
_LOG_TAIL = 20
_CODE_ROOT = Path(__file__).resolve().parent.parent  # holds node/, storage/, cli/


@dataclass(frozen=True)
class Secrets:
    token: str
    cluster_key: str
    s3_access_key: str
    s3_secret_key: str


def load_or_create_secrets(path: Path) -> Secrets:
    """Read ``secrets.json``, or create it with fresh random values (mode 0600, never rewritten)."""
    try:
        return Secrets(**json.loads(path.read_text()))
    except FileNotFoundError:
        pass
    except (ValueError, TypeError) as e:
        raise LaunchError(f"{path} is damaged ({e}); remove it to generate new secrets "
                          "(then restart every node)") from None
    new = Secrets(token=_secrets.token_urlsafe(32), cluster_key=_secrets.token_urlsafe(32),
                  s3_access_key="shoal" + _secrets.token_hex(8),
                  s3_secret_key=_secrets.token_urlsafe(30))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `shoal up` won the race
        return Secrets(**json.loads(path.read_text()))
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(new), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    return new


@dataclass(frozen=True)
class NodeStatus:
    id: str
    url: str
    pid: int | None  # from our pid file, when the process is alive
    running: bool  # a process we started is alive
    healthz: bool
    readyz: bool
    info: dict | None  # GET /v1/node


class Launcher:
    def __init__(self, config_path: str | Path, *, pick_free_ports: bool = False,
                 out: TextIO | None = None, grace: float = _GRACE, die_with_parent: bool = False):
        self.config_path = Path(config_path).resolve()
        try:
            self.cfg = Config.load(self.config_path)
        except ConfigError as e:
            raise LaunchError(f"config: {e}") from None
        if STORAGE in self.cfg.node_ids:
            raise LaunchError(f"node id {STORAGE!r} is reserved for the embedded S3 server")
        self.pick_free_ports = pick_free_ports  # weed's side ports (tests run several side by side)
        self.out = out  # progress messages ("starting n1 ..."); None = quiet
        self.grace = grace
        # tests: every process gets SIGKILL if this process dies (a killed runner).  The kernel
        # ties that signal to the forking thread, so they are forked on one lasting thread
        # (:func:`_spawn`), never on a caller's thread that may end first (a nemesis track).
        self.die_with_parent = die_with_parent
        self._procs: dict[str, subprocess.Popen] = {}  # children of this process, reaped by poll()
        self._exit_codes: dict[str, int] = {}  # last exit code of a child, for error messages

    # ---- paths -----------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.cfg.state_dir

    @property
    def secrets_path(self) -> Path:
        return self.state_dir / "secrets.json"

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.state_dir / "pids" / f"{name}.pid"

    def node_dir(self, node_id: str) -> Path:
        return self.state_dir / "nodes" / node_id

    @property
    def s3_dir(self) -> Path:
        return self.state_dir / "s3"

    def secrets(self) -> Secrets:
        return load_or_create_secrets(self.secrets_path)

    def existing_secrets(self) -> Secrets | None:
        """The secrets if ``up`` ever ran here; never creates them."""
        if not self.secrets_path.exists():
            return None
        return load_or_create_secrets(self.secrets_path)

    # ---- what a node process gets ------------------------------------------------------------
    def env(self, node_id: str | None = None) -> dict[str, str]:
        """The environment of a node process: token, cluster key and (embedded) S3 keys."""
        s = self.secrets()
        env = dict(os.environ)
        env[self.cfg.auth.token_env] = s.token
        env[self.cfg.auth.cluster_key_env] = s.cluster_key
        if self.cfg.storage.embedded:
            env["AWS_ACCESS_KEY_ID"] = s.s3_access_key
            env["AWS_SECRET_ACCESS_KEY"] = s.s3_secret_key
        env["PYTHONUNBUFFERED"] = "1"
        # Nodes run the code that sits beside this launcher, whatever the cwd or install state.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_CODE_ROOT), env.get("PYTHONPATH")) if p)
        return env

    def node_command(self, node_id: str) -> list[str]:
        return [sys.executable, "-m", "node", "--config", str(self.config_path), "--node", node_id]

    # ---- lifecycle ------------------------------------------------------------------------------
    def up(self, *, wait: bool = True, timeout: float = 60.0) -> list[str]:
        """Start storage (when embedded) and every node not already running; return who started.

        Idempotent: running processes are left alone. With ``wait``, block until every node's
        /readyz answers 200, or raise LaunchError (with the log tail of the node at fault).
        """
        self.secrets()
        self.start_storage()
        started = [n.id for n in self.cfg.nodes if self._start_node(n)]
        if wait:
            self.wait_ready(self.cfg.node_ids, timeout=timeout)
        return started

    def down(self, *, storage_sig: int = signal.SIGTERM) -> list[str]:
        """Stop every node (SIGTERM, SIGKILL after the grace period), then storage.

        ``storage_sig=SIGKILL`` skips the S3 server's ~2 s graceful stop (tests that discard it).
        """
        stopped = self._stop(self.cfg.node_ids)
        stopped += self._stop([STORAGE], sig=storage_sig)
        return stopped

    def kill(self, node_id: str) -> bool:
        """SIGKILL the node's whole process group; False if it was not running."""
        self.cfg.node(node_id)
        pid = self.pid(node_id)
        if pid is None:
            return False
        kill_group_quietly(pid, signal.SIGKILL)
        self._wait_dead(node_id, pid, 10.0)
        self.pid_path(node_id).unlink(missing_ok=True)
        return True

    def send_signal(self, node_id: str, sig: int, *, group: bool = False) -> bool:
        """Send ``sig`` to the node (or its whole process group); False if it is not running."""
        pid = self.pid(node_id)
        if pid is None:
            return False
        (kill_group_quietly if group else kill_quietly)(pid, sig)
        return True

    def stop(self, node_id: str, sig: int = signal.SIGTERM, *, timeout: float | None = None) -> bool:
        """Send ``sig`` and wait for the node to exit (SIGKILL after ``timeout``)."""
        self.cfg.node(node_id)
        return bool(self._stop([node_id], sig=sig, grace=timeout))

    def restart(self, node_id: str, *, wait: bool = True, timeout: float = 60.0) -> None:
        """Stop the node if it runs (gracefully), start it again with the same environment."""
        spec = self.cfg.node(node_id)
        self._stop([node_id])
        self._start_node(spec)
        if wait:
            self.wait_ready([node_id], timeout=timeout)

    def start_node(self, node_id: str, *, wait: bool = True, timeout: float = 60.0) -> bool:
        started = self._start_node(self.cfg.node(node_id))
        if wait:
            self.wait_ready([node_id], timeout=timeout)
        return started

    def start_storage(self, *, timeout: float = 30.0) -> bool:
        """Start the embedded S3 server unless it runs (no-op for an external endpoint)."""
        if not self.cfg.storage.embedded or self.pid(STORAGE) is not None:
            return False
        from storage import start_embedded, wait_s3_ready  # heavy import: only when needed

        port = self.cfg.storage.embedded_port
        if not _port_free("127.0.0.1", port):
            raise LaunchError(f"S3 port {port} (storage.embedded_port) is in use by another "
                              "process; stop it or change the port in cluster.yml")
        secrets = self.secrets()
        self._prepare_dirs()
        self._say(f"starting embedded S3 on 127.0.0.1:{port}")
        self._mark(STORAGE)
        try:
            proc = self._spawn(lambda: start_embedded(
                self.s3_dir, port, self.log_path(STORAGE), access_key=secrets.s3_access_key,
                secret_key=secrets.s3_secret_key, pick_free_ports=self.pick_free_ports,
                die_with_parent=self.die_with_parent))
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:  # security.toml, certificate
            raise LaunchError(f"embedded S3 server: {e}") from None
        self._register(STORAGE, proc)
        try:
            wait_s3_ready(port, timeout=timeout, proc=proc)
        except (RuntimeError, TimeoutError) as e:
            self._stop([STORAGE], grace=2.0)
            raise LaunchError(f"embedded S3 server: {e}\n{self._tail(STORAGE)}") from None
        return True

    def stop_storage(self, sig: int = signal.SIGTERM) -> bool:
        """Stop the embedded S3 server (SIGKILL for a crash); False if it was not running."""
        return bool(self._stop([STORAGE], sig=sig))

    # ---- inspection -----------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        """The pid of our process ``name`` if it is alive, else None (a stale pid file is removed)."""
        proc = self._procs.get(name)
        if proc is not None:
            if proc.poll() is None:
                return proc.pid
            self._exit_codes[name] = proc.returncode
            del self._procs[name]
        try:
            pid = int(self.pid_path(name).read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        if _looks_like_ours(pid, name):
            return pid
        self.pid_path(name).unlink(missing_ok=True)
        return None

    def running(self, name: str) -> bool:
        return self.pid(name) is not None

    def status(self, *, timeout: float = 1.0) -> dict[str, Any]:
        """Nodes (process, /healthz, /readyz, /v1/node) and storage, as one JSON-able dict."""
        nodes = []
        with httpx.Client(timeout=timeout) as http:
            for spec in self.cfg.nodes:
                pid = self.pid(spec.id)
                healthz = _get_ok(http, spec.url + "/healthz")
                readyz = healthz and _get_ok(http, spec.url + "/readyz")
                info = _get_json(http, spec.url + "/v1/node") if healthz else None
                nodes.append(NodeStatus(spec.id, spec.url, pid, pid is not None, healthz, readyz, info))
            endpoint = self.cfg.storage.endpoint_url()
            storage = {
                "endpoint": endpoint,
                "embedded": self.cfg.storage.embedded,
                "bucket": self.cfg.storage.bucket,
                "pid": self.pid(STORAGE) if self.cfg.storage.embedded else None,
                "reachable": _reachable(http, endpoint),
            }
        return {"cluster": self.cfg.cluster, "config": str(self.config_path),
                "state_dir": str(self.state_dir), "nodes": [asdict(n) for n in nodes],
                "storage": storage}

    def wait_ready(self, node_ids: Iterable[str], *, timeout: float = 60.0) -> None:
        """Block until every named node answers /readyz 200; LaunchError if one dies or time runs out."""
        pending = {i: self.cfg.node(i) for i in node_ids}
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as http:
            while pending:
                for node_id, spec in list(pending.items()):
                    if node_id in self._procs or self.pid_path(node_id).exists():
                        if self.pid(node_id) is None:
                            raise LaunchError(f"node {node_id} exited{self._exit_code(node_id)} "
                                              f"while starting\n{self._tail(node_id)}")
                    if _get_ok(http, spec.url + "/readyz"):
                        del pending[node_id]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    tails = "\n".join(self._tail(i) for i in pending)
                    raise LaunchError(f"not ready after {timeout:.0f} s: {', '.join(pending)} "
                                      f"(GET /readyz never answered 200)\n{tails}")
                time.sleep(0.1)

    def log_tail(self, name: str, lines: int = _LOG_TAIL) -> list[str]:
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return text.splitlines()[-lines:]

    # ---- internals ------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()

    def _prepare_dirs(self) -> None:
        for d in ("pids", "logs", "nodes", "s3"):
            (self.state_dir / d).mkdir(parents=True, exist_ok=True)

    def _mark(self, name: str) -> None:
        """A JSON line in the log where a new run starts (tests tell runs apart by it)."""
        rec = {"ts": round(time.time(), 6), "level": "info", "node": name, "event": "launcher_start"}
        with open(self.log_path(name), "a") as f:
            f.write(json.dumps(rec) + "\n")

    def _register(self, name: str, proc: subprocess.Popen) -> None:
        self._procs[name] = proc
        tmp = self.pid_path(name).with_suffix(".tmp")
        tmp.write_text(f"{proc.pid}\n")
        os.replace(tmp, self.pid_path(name))

    def _start_node(self, spec: NodeSpec) -> bool:
        if self.pid(spec.id) is not None:
            return False
        for port, what in ((spec.http_port, "HTTP"), (spec.gossip_port, "gossip")):
            if not _port_free(spec.host, port, udp=what == "gossip"):
                raise LaunchError(f"{what} port {spec.host}:{port} of node {spec.id} is in use by "
                                  "another process (another cluster running? see `shoal status`)")
        self._prepare_dirs()
        self.node_dir(spec.id).mkdir(parents=True, exist_ok=True)
        self._say(f"starting node {spec.id} on {spec.url}")
        self._mark(spec.id)
        with open(self.log_path(spec.id), "ab") as log:
            proc = self._spawn(lambda: subprocess.Popen(
                self.node_command(spec.id), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env(spec.id), start_new_session=True,
                cwd=self.config_path.parent,
                preexec_fn=_die_with_parent() if self.die_with_parent else None))
        self._register(spec.id, proc)
        return True

    def _spawn(self, start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        """``start()`` here, or (``die_with_parent``) on the lasting spawner thread; its result."""
        return _spawner().submit(start).result() if self.die_with_parent else start()

    def _stop(self, names: Iterable[str], *, sig: int = signal.SIGTERM,
              grace: float | None = None) -> list[str]:
        grace = self.grace if grace is None else grace
        targets = {n: p for n in names if (p := self.pid(n)) is not None}
        for name, pid in targets.items():
            self._say(f"stopping {name} (pid {pid})")
            # Nodes get SIGTERM alone (they stop their own children); the rest by group.
            (kill_group_quietly if sig == signal.SIGKILL or name == STORAGE else kill_quietly)(pid, sig)
        deadline = time.monotonic() + grace
        for name, pid in targets.items():
            if not self._wait_dead(name, pid, max(0.0, deadline - time.monotonic())):
                self._say(f"{name} did not stop within {grace:.0f} s: SIGKILL")
                kill_group_quietly(pid, signal.SIGKILL)
                self._wait_dead(name, pid, 10.0)
            kill_group_quietly(pid, signal.SIGKILL)  # leftovers of its group (ffmpeg of a dead node)
            self.pid_path(name).unlink(missing_ok=True)
        return list(targets)

    def _wait_dead(self, name: str, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        proc = self._procs.get(name)
        while True:
            if proc is not None and proc.pid == pid:
                if proc.poll() is not None:
                    return True
            elif not _looks_like_ours(pid, name):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _exit_code(self, name: str) -> str:
        proc = self._procs.get(name)
        code = proc.poll() if proc is not None else self._exit_codes.get(name)
        return f" with code {code}" if code is not None else ""

    def _tail(self, name: str) -> str:
        lines = self.log_tail(name)
        path = self.log_path(name)
        if not lines:
            return f"  ({path} is empty)"
        return f"  last lines of {path}:\n" + "\n".join("    " + ln for ln in lines)


# ---- process and socket helpers ------------------------------------------------------------------
def kill_quietly(pid: int, sig: int) -> None:
    """Signal ``pid``; a process already gone is not an error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def kill_group_quietly(pid: int, sig: int) -> None:
    """Signal the process group ``pid`` leads; one already gone (or not ours) is not an error."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _looks_like_ours(pid: int, name: str) -> bool:
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = p.cmdline()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    if name == STORAGE:
        return any("weed" in part for part in cmd[:1]) or "mini" in cmd
    return "node" in cmd and name in cmd


def _port_free(host: str, port: int, *, udp: bool = False) -> bool:
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        if not udp:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _get_ok(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _get_json(http: httpx.Client, url: str) -> dict | None:
    try:
        r = http.get(url)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _reachable(http: httpx.Client, url: str) -> bool:
    """Any HTTP answer counts: S3 says 403/404 to an anonymous GET and is still up."""
    try:
        http.get(url)
        return True
    except httpx.HTTPError:
        return False


_SPAWNER: ThreadPoolExecutor | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawner() -> ThreadPoolExecutor:
    """One thread, alive until this process exits, that forks every die-with-parent child.

    The parent-death signal fires when the forking *thread* ends: forked here, a child dies
    with the test runner, not with whichever caller's thread asked for it.
    """
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="launcher-spawner")
        return _SPAWNER


def _die_with_parent():
    from storage.embedded import die_with_this_thread  # only tests ask for it
    return die_with_this_thread()
