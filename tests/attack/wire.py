"""Raw sockets for the attack suite, every read bounded by a short timeout.

* :func:`exchange` writes bytes to a TCP port (optionally in slow pieces) and reads until the
  server closes or ``timeout`` passes without a byte; the answers come back as a checks.Stream.
* :func:`gossip_packet` seals a membership message with the cluster key as a node would, with
  the counter and timestamp the caller chooses (replays, far-future counters).
* :func:`is_closed` says whether the server closed a connection we hold.
"""

from __future__ import annotations

import hashlib
import hmac
import select
import socket
import struct
import time

import msgpack

from membership import codec
from membership.messages import Message

from .checks import Stream, split_responses

GOSSIP_FRAME = struct.Struct(">I")


def exchange(port: int, data: bytes | list[bytes], *, timeout: float = 3.0, pause: float = 0.0,
             head_request: bool = False, settle: float = 0.5, total: float = 6.0) -> Stream:
    """Send ``data`` (a list: piece by piece, ``pause`` seconds apart) and read what comes back.

    Reading stops when the server closes, after ``total`` seconds in all, or when no byte came
    for ``timeout`` seconds (``settle`` seconds once a whole answer is in: long enough for a
    second, smuggled answer to follow, short enough that kept-alive connections cost little).
    """
    pieces = data if isinstance(data, list) else [data]
    out = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            for i, piece in enumerate(pieces):
                if i and pause:
                    time.sleep(pause)
                s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        deadline = time.monotonic() + total
        while not closed and time.monotonic() < deadline:
            answers, _ = split_responses(out, head_request=head_request)
            s.settimeout(settle if answers else timeout)
            try:
                got = s.recv(1 << 16)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not got:
                closed = True
                break
            out += got
    answers, rest = split_responses(out, head_request=head_request)
    return Stream(answers, closed, rest)


def is_closed(sock: socket.socket) -> bool:
    """True once the peer closed ``sock`` (EOF or reset); never blocks."""
    r, _, _ = select.select([sock], [], [], 0)
    if not r:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BlockingIOError, OSError):
        return True


def gossip_packet(mac_key: bytes, msg: Message, *, counter: int, timestamp_ms: int | None = None) -> bytes:
    """``msg`` sealed with the gossip MAC key, as membership.codec.Encoder does."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    body = codec.body_bytes(msg, counter, ts)
    return body + hmac.new(mac_key, body, hashlib.sha256).digest()


def send_datagrams(port: int, packets: list[bytes], *, wait_reply: float = 0.0) -> list[bytes]:
    """Send each packet to the gossip UDP port; collect replies for ``wait_reply`` seconds."""
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        for p in packets:
            try:
                s.sendto(p, ("127.0.0.1", port))
            except OSError:  # EMSGSIZE for a datagram beyond 65,507 bytes: not sent at all
                pass
        deadline = time.monotonic() + wait_reply
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                replies.append(s.recv(65535))
            except socket.timeout:
                break
    return replies


def open_message(mac_key: bytes, data: bytes) -> list | None:
    """The msgpack body of an authentic packet, or None."""
    if len(data) <= codec.MAC_SIZE:
        return None
    body, mac = data[:-codec.MAC_SIZE], data[-codec.MAC_SIZE:]
    if not hmac.compare_digest(mac, hmac.new(mac_key, body, hashlib.sha256).digest()):
        return None
    return msgpack.unpackb(body, raw=False)
