"""The wire format: msgpack packets authenticated with HMAC-SHA256, and their replay check.

A packet is ``body || mac`` where ``mac = HMAC-SHA256(key, body)`` (32 bytes)
and ``body`` is the msgpack array::

    [VERSION, boot, counter, sent_at_ms, kind, sender, seq, target,
     target_addr, join, [[kind, id, incarnation, addr, http, origin], ...]]

``boot`` is a random 32-bit id the sender draws when it starts, ``counter`` counts
the packets of that boot (from 1, wrapping at 2**32) and ``sent_at_ms`` is the
sender's wall clock.  ``(sender, boot, counter)`` names the packet; the
receiver's ``ReplayGuard`` (``replay.py``) accepts it once, and only while
``sent_at`` is within ``window`` seconds of its own clock.  Nothing a sender
sends moves a mark that refuses its later packets, so a restarted sender (new
boot) is heard whatever its clock did, as long as that clock is within the window.

``Decoder`` rejects, and counts by reason: ``oversized`` (> ``max_size``),
``truncated`` (shorter than a MAC), ``forged`` (MAC mismatch; checked before any
decoding), ``undecodable`` (authentic but not a valid body: only a key holder
running other code can send these; wire version 1 packets land here too),
``stale`` (sent more than ``window`` from our clock), ``replayed`` (its name was
already accepted inside the window).

Errors: ``PacketDropped(reason)`` from ``Decoder.decode``;
``PacketTooLarge`` from ``Encoder.encode`` when a packet would exceed the limit
(the state machine budgets its piggyback so this does not happen for datagrams).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import msgpack

from .messages import KINDS, STATES, Message, Update
from .replay import ReplayGuard

VERSION = 2  # 1: one counter per sender seeded from the clock (replaced: one packet could poison it)
MAC_SIZE = 32
MAX_DATAGRAM = 1400  # bytes on the wire, MAC included
WINDOW = 120.0  # default seconds of clock difference tolerated (MembershipConfig.packet_window)
MEMORY = 32768  # default packets remembered against replay (MembershipConfig.replay_memory)
# Bytes the envelope can take around the updates: array header 1, version 1, boot 5 and
# counter 5 (uint32), sent_at_ms 9, kind 10, sender 66 (ids <= 64 chars), seq 9, target 66,
# target_addr 102 (<= 100 chars), join 1, updates array header 3: 278 at most.  Budgeted as 284,
# the figure of wire version 1, so the piggyback budget (and every seeded simulation) is unchanged.
ENVELOPE_MAX = 1 + 1 + 5 + 5 + 9 + 10 + 66 + 9 + 66 + 102 + 1 + 3 + 6
UPDATES_BUDGET = MAX_DATAGRAM - MAC_SIZE - ENVELOPE_MAX
# The largest update row: array header 1, kind 8 ("suspect"), id 66, incarnation 9,
# addr 257 and http 257 (<= 255 chars), origin 66.
UPDATE_MAX = 1 + 8 + 66 + 9 + 257 + 257 + 66
_U32 = 2**32

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


def body_bytes(msg: Message, boot: int, counter: int, sent_at_ms: int) -> bytes:
    return msgpack.packb([VERSION, boot, counter, sent_at_ms, msg.kind, msg.sender, msg.seq,
                          msg.target, msg.target_addr, msg.join,
                          [_update_row(u) for u in msg.updates]])


def push_pull_limit(max_members: int) -> int:
    """Bytes of the largest packet carrying a table of ``max_members`` members (push-pull)."""
    return ENVELOPE_MAX + 2 + UPDATE_MAX * max_members + MAC_SIZE  # + 2: array32 header


class Encoder:
    """Seals messages for one sender.  ``wall`` is the wall clock (seconds); ``boot`` is
    this process's random boot id (drawn here unless given, as the simulator does)."""

    def __init__(self, key: bytes, *, wall=time.time, boot: int | None = None) -> None:
        self._key = key
        self._wall = wall
        self.boot = secrets.randbits(32) if boot is None else boot % _U32
        # Invariant: unique per packet within a boot (wraps after 2**32 packets, far outside
        # any window in which the previous use is remembered).
        self._counter = 0

    def encode(self, msg: Message, *, max_size: int = MAX_DATAGRAM) -> bytes:
        self._counter = self._counter % (_U32 - 1) + 1
        body = body_bytes(msg, self.boot, self._counter, int(self._wall() * 1000))
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
    """Checks and opens packets: size, MAC, then body, then the replay guard (``replay.py``)."""

    def __init__(self, key: bytes, *, wall=time.time, window: float = WINDOW,
                 memory: int = MEMORY) -> None:
        self._key = key
        self._wall = wall
        self.replay = ReplayGuard(window, memory)

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
            msg, boot, counter, sent_at_ms = self._parse(raw)
        except Exception as e:  # authentic yet malformed: never let it escape
            raise PacketDropped("undecodable", type(e).__name__) from None
        reason = self.replay.check((msg.sender, boot, counter), sent_at_ms / 1000.0, self._wall())
        if reason is not None:
            raise PacketDropped(reason, f"{msg.sender} boot {boot} #{counter} sent {sent_at_ms}")
        return msg

    @staticmethod
    def _parse(raw: Any) -> tuple[Message, int, int, int]:
        if not isinstance(raw, list) or len(raw) != 11 or raw[0] != VERSION:
            raise ValueError("bad envelope")
        _, boot, counter, sent_at_ms, kind, sender, seq, target, target_addr, join, updates = raw
        if kind not in KINDS or not isinstance(join, bool) or not isinstance(updates, list):
            raise ValueError("bad envelope fields")
        if _int(boot) >= _U32 or _int(counter) >= _U32:
            raise ValueError("bad boot or counter")
        msg = Message(kind=kind, sender=_str(sender, 64), seq=_int(seq), target=_str(target, 64),
                      target_addr=_str(target_addr, 100),
                      updates=tuple(_parse_update(u) for u in updates), join=join)
        if not msg.sender:
            raise ValueError("no sender")
        return msg, boot, counter, _int(sent_at_ms)
