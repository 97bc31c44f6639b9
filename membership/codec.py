"""The wire format: msgpack packets authenticated with HMAC-SHA256.

A packet is ``body || mac`` where ``mac = HMAC-SHA256(key, body)`` (32 bytes)
and ``body`` is the msgpack array::

    [VERSION, sender_counter, timestamp_ms, kind, sender, seq, target,
     target_addr, join, [[kind, id, incarnation, addr, http, origin], ...]]

``sender_counter`` grows by one per packet a sender emits (seeded from the wall
clock at start, so a restarted process continues above its old values) and
``timestamp_ms`` is the sender's wall clock.  ``Decoder`` rejects, and counts
by reason: ``oversized`` (> ``max_size``), ``truncated`` (shorter than a MAC),
``forged`` (MAC mismatch), ``undecodable`` (authentic but not a valid body:
only a key holder running other code can send these), ``stale`` (timestamp
more than ``max_skew`` away from our clock), ``replayed`` (a counter already
seen from that sender, or older than its replay window).

Errors: ``PacketDropped(reason)`` from ``Decoder.decode``;
``PacketTooLarge`` from ``Encoder.encode`` when a datagram would exceed the limit
(the state machine budgets its piggyback so this does not happen).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import msgpack

from .messages import KINDS, STATES, Message, Update

VERSION = 1
MAC_SIZE = 32
MAX_DATAGRAM = 1400  # bytes on the wire, MAC included
MAX_STREAM = 4 * 1024 * 1024  # push-pull frames
MAX_SKEW = 60.0  # seconds of clock difference tolerated between members
REPLAY_WINDOW = 1024  # per-sender counters remembered below the highest seen
# Bytes the envelope can take around the updates: fixed fields and three strings
# (sender, target: ids of <= 64 chars; target_addr <= 100 chars) with msgpack headers.
ENVELOPE_MAX = 1 + 9 + 9 + 10 + 66 + 9 + 66 + 102 + 1 + 3 + 8
UPDATES_BUDGET = MAX_DATAGRAM - MAC_SIZE - ENVELOPE_MAX

DROP_REASONS = ("oversized", "truncated", "forged", "undecodable", "stale", "replayed")


class CodecError(Exception):
    """Base of this module's errors."""


class PacketDropped(CodecError):
    """An incoming packet was rejected; ``reason`` is one of ``DROP_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class PacketTooLarge(CodecError):
    """An outgoing packet would exceed the datagram limit."""


def derive_key(key: bytes | None, cluster: str = "") -> bytes:
    """The MAC key: derived from the cluster key only.  Without a key (a node starts so
    only under ``auth: none``) it is a public constant: it catches corruption, it
    authenticates nothing.  ``cluster`` is not used any more (no key is derived from
    the public cluster name); it stays so callers need not change."""
    if key:
        return hashlib.sha256(b"shoal-gossip-v1\0" + key).digest()
    return hashlib.sha256(b"shoal-gossip-open-v1").digest()


def _update_row(u: Update) -> list[Any]:
    return [u.kind, u.id, u.incarnation, u.addr, u.http, u.origin]


def update_size(u: Update) -> int:
    """Encoded size of one update inside a packet, in bytes."""
    return len(msgpack.packb(_update_row(u)))


def body_bytes(msg: Message, counter: int, timestamp_ms: int) -> bytes:
    return msgpack.packb([VERSION, counter, timestamp_ms, msg.kind, msg.sender, msg.seq,
                          msg.target, msg.target_addr, msg.join,
                          [_update_row(u) for u in msg.updates]])


class Encoder:
    """Seals messages for one sender.  ``wall`` is the wall clock (seconds)."""

    def __init__(self, key: bytes, *, wall=time.time) -> None:
        self._key = key
        self._wall = wall
        # Invariant: strictly increasing across packets and across restarts
        # (microseconds since the epoch at start, plus one per packet).
        self._counter = int(wall() * 1_000_000)

    def encode(self, msg: Message, *, max_size: int = MAX_DATAGRAM) -> bytes:
        self._counter += 1
        body = body_bytes(msg, self._counter, int(self._wall() * 1000))
        packet = body + hmac.new(self._key, body, hashlib.sha256).digest()
        if len(packet) > max_size:
            raise PacketTooLarge(f"{len(packet)} bytes > {max_size}")
        return packet


def _str(v: Any, limit: int = 255) -> str:
    if not isinstance(v, str) or len(v) > limit:
        raise ValueError("bad string")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 2**63:
        raise ValueError("bad integer")
    return v


def _parse_update(row: Any) -> Update:
    if not isinstance(row, list) or len(row) != 6:
        raise ValueError("bad update")
    kind = _str(row[0])
    if kind not in STATES:
        raise ValueError("bad update kind")
    return Update(kind, _str(row[1], 64), _int(row[2]), _str(row[3]), _str(row[4]),
                  _str(row[5], 64))


class Decoder:
    """Checks and opens packets; remembers counters per sender to reject replays."""

    def __init__(self, key: bytes, *, wall=time.time, max_skew: float = MAX_SKEW) -> None:
        self._key = key
        self._wall = wall
        self._max_skew = max_skew
        # sender -> (highest counter, set of counters seen within the window below it)
        self._seen: dict[str, tuple[int, set[int]]] = {}

    def decode(self, data: bytes, *, max_size: int = MAX_DATAGRAM) -> Message:
        """The message in ``data``; raises ``PacketDropped`` and nothing else."""
        if len(data) > max_size:
            raise PacketDropped("oversized", f"{len(data)} bytes")
        if len(data) <= MAC_SIZE:
            raise PacketDropped("truncated", f"{len(data)} bytes")
        body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
        if not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()):
            raise PacketDropped("forged")
        try:
            raw = msgpack.unpackb(body, raw=False, strict_map_key=True,
                                  max_bin_len=0, max_ext_len=0)
            msg, counter, ts_ms = self._parse(raw)
        except Exception as e:  # authentic yet malformed: never let it escape
            raise PacketDropped("undecodable", type(e).__name__) from None
        if abs(ts_ms / 1000.0 - self._wall()) > self._max_skew:
            raise PacketDropped("stale", f"timestamp {ts_ms}")
        self._check_replay(msg.sender, counter)
        return msg

    @staticmethod
    def _parse(raw: Any) -> tuple[Message, int, int]:
        if not isinstance(raw, list) or len(raw) != 10 or raw[0] != VERSION:
            raise ValueError("bad envelope")
        _, counter, ts_ms, kind, sender, seq, target, target_addr, join, updates = raw
        if kind not in KINDS or not isinstance(join, bool) or not isinstance(updates, list):
            raise ValueError("bad envelope fields")
        msg = Message(kind=kind, sender=_str(sender, 64), seq=_int(seq), target=_str(target, 64),
                      target_addr=_str(target_addr, 100),
                      updates=tuple(_parse_update(u) for u in updates), join=join)
        if not msg.sender:
            raise ValueError("no sender")
        return msg, _int(counter), _int(ts_ms)

    def _check_replay(self, sender: str, counter: int) -> None:
        highest, window = self._seen.get(sender, (0, set()))
        if counter > highest:
            window.add(counter)
            if len(window) > REPLAY_WINDOW:
                floor = counter - REPLAY_WINDOW
                window = {c for c in window if c > floor}
            self._seen[sender] = (counter, window)
            return
        if counter <= highest - REPLAY_WINDOW or counter in window:
            raise PacketDropped("replayed", f"{sender}#{counter}")
        window.add(counter)
