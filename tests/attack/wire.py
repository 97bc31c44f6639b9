"""Raw sockets for the attack suite, every read bounded by a short timeout.

* :func:`exchange` writes bytes to a TCP port (optionally in slow pieces) and reads until the
  server closes or ``timeout`` passes without a byte; the answers come back as a checks.Stream.
* :func:`gossip_packet` seals a membership message with the cluster key as a node would
  (``membership.codec``: wire version 2), with the boot id, counter and send time the caller
  chooses (replays, stale or far-future packets, forged boot ids).
* :func:`frame_header` / :func:`gossip_frame` make gossip TCP frames as a node would
  (``membership.frames``: the 39-byte authenticated header, then one codec packet);
  :func:`read_frame` reads and checks one reply frame.
* :func:`is_closed` says whether the server closed a connection we hold.

Nothing here writes the format itself: every byte comes from the membership package's own
functions, so the suite attacks exactly what the nodes run.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import select
import socket
import time

import msgpack

from membership import codec, frames
from membership.messages import Message
from membership.replay import ReplayGuard

from .checks import Stream, split_responses

HEADER_SIZE = frames.HEADER_SIZE


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


def gossip_packet(mac_key: bytes, msg: Message, *, counter: int, boot: int | None = None,
                  sent_at_ms: int | None = None) -> bytes:
    """``msg`` sealed with the gossip MAC key exactly as membership.codec.Encoder seals it
    (``codec.body_bytes`` then HMAC-SHA256), with the given ``counter``, ``boot`` (a fresh
    random one unless given) and ``sent_at_ms`` (now unless given)."""
    boot = secrets.randbits(32) if boot is None else boot
    ts = int(time.time() * 1000) if sent_at_ms is None else sent_at_ms
    body = codec.body_bytes(msg, boot, counter, ts)
    return body + hmac.new(mac_key, body, hashlib.sha256).digest()


def frame_header(mac_key: bytes, length: int, *, sent_at: float | None = None) -> bytes:
    """A gossip TCP frame header announcing ``length`` bytes (membership.frames.seal_header)."""
    return frames.seal_header(mac_key, length, time.time() if sent_at is None else sent_at)


def gossip_frame(mac_key: bytes, packet: bytes) -> bytes:
    """``packet`` framed for the gossip TCP port, as membership.streams.send_frame frames it."""
    return frame_header(mac_key, len(packet)) + packet


def read_frame(sock: socket.socket, mac_key: bytes, *, limit: int, timeout: float = 3.0) -> bytes | None:
    """One reply frame's packet, its header checked by membership.frames.open_header; None if
    the peer closed or ``timeout`` passed first.  Raises ``frames.FrameRefused`` for a bad header."""
    deadline = time.monotonic() + timeout

    def exactly(n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                got = sock.recv(n - len(buf))
            except (socket.timeout, ConnectionResetError):
                return None
            if not got:
                return None
            buf += got
        return buf

    header = exactly(HEADER_SIZE)
    if header is None:
        return None
    length = frames.open_header(mac_key, header, limit=limit, guard=ReplayGuard(codec.WINDOW, 16),
                                now=time.time())
    return exactly(length)


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
    """The msgpack body of an authentic packet, or None (the MAC checked as codec.Decoder does;
    the body is read without the replay guard, so a test can look at any reply)."""
    if len(data) <= codec.MAC_SIZE:
        return None
    body, mac = data[:-codec.MAC_SIZE], data[-codec.MAC_SIZE:]
    if not hmac.compare_digest(mac, hmac.new(mac_key, body, hashlib.sha256).digest()):
        return None
    return msgpack.unpackb(body, raw=False)


# Where a field sits in an opened packet body (codec.body_bytes' order).
BODY_VERSION, BODY_BOOT, BODY_COUNTER, BODY_SENT_AT, BODY_KIND, BODY_SENDER, BODY_SEQ = range(7)


def message_kind(mac_key: bytes, data: bytes) -> str | None:
    """The kind (``ping``, ``ack``, ...) of an authentic wire-version-2 packet, else None."""
    body = open_message(mac_key, data)
    if not isinstance(body, list) or len(body) <= BODY_KIND or body[BODY_VERSION] != codec.VERSION:
        return None
    return body[BODY_KIND]
