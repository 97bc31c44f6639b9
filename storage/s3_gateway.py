"""The embedded S3 server's only door: ``python -m storage.s3_gateway --port P --socket S -- weed ...``.

``weed mini`` opens master, volume, filer, gRPC and admin ports beside S3, and weed 4.48 cannot
close all of them (the master's HTTP admin calls, ``/col/delete`` among them, take no
credentials).  So weed runs in a network namespace of its own, where those ports exist and
nothing outside can reach them, and this process, outside, forwards ``127.0.0.1:P`` byte for byte
to weed's S3 Unix socket ``S`` (``-s3.localSocket``, a file in the 0700 data folder).  S3 keeps
its own SigV4 check; the bytes and the ``Host`` header pass unchanged.

One process group: the launcher's SIGTERM/SIGKILL reaches both; this process exits when weed
does and stops weed when it is told to stop.  Invariant: weed never outlives its gateway.  A
gateway killed alone (a parent-death signal, ``kill -9`` of its pid, the OOM killer) takes weed
with it through the kernel's parent-death signal: an orphaned weed would be unreachable yet hold
the data folder, so the next start's weed would crash and storage would never come back.  Connections are bounded (``MAX_CONNECTIONS``);
each is two threads copying with a fixed buffer.

Linux only.  The namespace needs root or unprivileged user namespaces; without either the
gateway refuses to start (it never runs weed with its side ports open).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

__all__ = ["isolate_network", "weed_preexec", "main", "MAX_CONNECTIONS"]

MAX_CONNECTIONS = 512  # concurrent S3 connections; more wait in the listen backlog
BUFFER = 1 << 18
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH14x"
_PR_SET_PDEATHSIG = 1


def isolate_network() -> None:
    """In a child between fork and exec: a network namespace of its own with loopback up.

    Root: a new network namespace.  Otherwise a user namespace first (this uid as root inside),
    so the same works for an ordinary user where the kernel allows it.  Raises OSError.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWNET) != 0:
        if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot make a network namespace: {os.strerror(err)}")
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def weed_preexec(gateway_pid: int):
    """weed's set-up between fork and exec: its own network namespace, SIGKILL when the gateway dies.

    Called in the gateway's main thread, which lives as long as the gateway (the parent-death
    signal follows the thread that forked).  A gateway that died before ``prctl`` took effect is
    seen by ``getppid`` and the child exits instead of running weed unattended.
    """
    def preexec() -> None:
        isolate_network()  # first: a credential change would clear the parent-death signal
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != gateway_pid:
            os._exit(1)

    return preexec


def _pump(src: socket.socket, dst: socket.socket) -> None:
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    try:
        while True:
            n = src.recv_into(buf)
            if n == 0:
                break
            dst.sendall(view[:n])
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def _serve_connection(client: socket.socket, path: str, slots: threading.BoundedSemaphore) -> None:
    try:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            try:
                upstream.connect(path)
            except OSError:
                return  # weed not listening yet: the client sees a closed connection
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()
    finally:
        slots.release()


def _accept_loop(listener: socket.socket, path: str) -> None:
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    while True:
        slots.acquire()
        try:
            client, _ = listener.accept()
        except OSError:
            slots.release()
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve_connection, args=(client, path, slots), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m storage.s3_gateway")
    ap.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 for S3 clients")
    ap.add_argument("--socket", required=True, help="weed's S3 Unix socket (-s3.localSocket)")
    ap.add_argument("weed", nargs=argparse.REMAINDER, help="-- then the weed command line")
    args = ap.parse_args(argv)
    cmd = args.weed[1:] if args.weed[:1] == ["--"] else args.weed
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))  # before weed starts: a taken port fails at once
    listener.listen(128)
    try:
        os.unlink(args.socket)
    except FileNotFoundError:
        pass
    try:
        weed = subprocess.Popen(cmd, preexec_fn=weed_preexec(os.getpid()), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"s3_gateway: cannot start weed in its own network namespace: {e}", file=sys.stderr)
        return 3

    def stop(signum, _frame) -> None:
        if weed.poll() is None:
            weed.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=_accept_loop, args=(listener, args.socket), daemon=True).start()
    code = weed.wait()
    listener.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
