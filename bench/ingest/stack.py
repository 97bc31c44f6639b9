"""The processes under test: one embedded S3 server and one node, on free ports in a tmp dir.

    with S3(base) as s3:
        with Node(base, s3, overrides={"storage": {"parts_in_flight": 4}}) as node:
            node.url, node.pid, node.token

Both are started in their own process group and stopped (SIGTERM, then SIGKILL) on exit,
also when the body raised.  Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import storage  # noqa: E402

ACCESS_KEY = "shoalbench"
SECRET_KEY = "shoalbench-secret"
BUCKET = "shoal-bench"


def _stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class S3:
    """SeaweedFS ``weed mini`` via storage.start_embedded, every port free."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.port = storage.free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "S3":
        self.base.mkdir(parents=True, exist_ok=True)
        self.proc = storage.start_embedded(self.base / "s3data", self.port, self.base / "weed.log",
                                           access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                           pick_free_ports=True)
        _stopped_unless(self.proc, lambda: storage.wait_s3_ready(self.port, proc=self.proc))
        return self

    def __exit__(self, *exc) -> None:
        _stop_if_started(self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def vacuum(self) -> None:
        """Reclaim deleted objects' space now (SeaweedFS volumes are append-only; bench-only call,
        so a run's data stays about one file's size, which matters on tmpfs).  The master's port
        exists only inside the embedded server's own network namespace (storage/s3_gateway.py), so
        the call is made from inside it (nsenter into weed's namespace, as root)."""
        import psutil
        weed = next(p for p in psutil.Process(self.pid).children(recursive=True)
                    if any(a.startswith("-master.port=") for a in p.cmdline()))
        port = next(a.split("=", 1)[1] for a in weed.cmdline() if a.startswith("-master.port="))
        url = f"http://127.0.0.1:{port}/vol/vacuum?garbageThreshold=0.001"
        subprocess.run(["nsenter", "-t", str(weed.pid), "-n", sys.executable, "-c",
                        f"import urllib.request; urllib.request.urlopen({url!r}, timeout=120).read()"],
                       check=True, timeout=150)


class Node:
    """``python -m node --config <tmp cluster.yml> --node n1`` against ``s3``."""

    def __init__(self, base: Path, s3: S3, overrides: dict | None = None, *, name: str = "node") -> None:
        self.dir = Path(base) / name
        self.s3 = s3
        self.overrides = overrides or {}
        self.http_port = storage.free_port()
        self.gossip_port = storage.free_port()
        self.token = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "node.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def config_doc(self) -> dict:
        doc = {
            "cluster": "bench",
            "profile": "local",
            "state_dir": "state",
            "nodes": [{"id": "n1", "host": "127.0.0.1", "http_port": self.http_port,
                       "gossip_port": self.gossip_port}],
            "storage": {"endpoint": self.s3.endpoint, "bucket": BUCKET},
            # One transcode at a time; the bench's random bytes fail at the probe anyway.
            "processing": {"concurrency": 1, "max_attempts": 1},
        }
        for section, values in self.overrides.items():
            doc.setdefault(section, {}).update(values)
        return doc

    def __enter__(self) -> "Node":
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "cluster.yml"
        cfg.write_text(yaml.safe_dump(self.config_doc(), sort_keys=False))
        env = dict(os.environ, SHOAL_TOKEN=self.token, SHOAL_CLUSTER_KEY=secrets.token_hex(16),
                   AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "--node", "n1"],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=self.dir, start_new_session=True)
        _stopped_unless(self.proc, lambda: self._wait_ready(60.0))
        return self

    def __exit__(self, *exc) -> None:
        _stop_if_started(self.proc)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"node not ready after {timeout:.0f} s; see {self.log_path}")

    # ---- after an upload -----------------------------------------------------------------------
    def settle_and_delete(self, vid: str, timeout: float = 90.0) -> str:
        """Wait until the worker is done with ``vid`` (failed/ready), then delete it (frees disk).

        The worker downloads and probes the source right after the upload; waiting keeps that
        work out of the next measurement.
        """
        deadline = time.monotonic() + timeout
        state = "?"
        with httpx.Client(timeout=5.0) as http:
            while time.monotonic() < deadline:
                r = http.get(f"{self.url}/v1/videos/{vid}")
                state = r.json().get("state", "?") if r.status_code == 200 else f"http {r.status_code}"
                if state in ("failed", "ready"):
                    break
                time.sleep(0.2)
            http.delete(f"{self.url}/v1/videos/{vid}", headers={"Authorization": f"Bearer {self.token}"},
                        timeout=60.0)
        return state


def _stopped_unless(proc, wait_ready) -> None:
    """Wait until ``proc`` serves; stop its whole group if it does not (then re-raise)."""
    try:
        wait_ready()
    except BaseException:
        _stop_group(proc)
        raise


def _stop_if_started(proc) -> None:
    if proc is not None:
        _stop_group(proc)
