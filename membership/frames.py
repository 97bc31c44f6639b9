"""Gossip TCP framing: a small authenticated header, then one codec packet (pure).

A frame on the gossip TCP port is ``header || packet``; ``packet`` is exactly what
``codec.Encoder`` makes (its own MAC and replay name), and the header says how long it is::

    header = "SG" | version (1 byte) | length (uint32) | sent_at_ms (uint64) | nonce (8 bytes)
             | tag (16 bytes) = HMAC-SHA256(K, "shoal-frame\\0" || the 23 bytes before it)[:16]

The receiver reads the 39 header bytes, checks them (``open_header``) and only then reads
``length`` bytes: a peer without the key gets no allocation beyond the header, and nobody gets
one beyond ``limit``.  Checks, in order, each a refusal reason (``FrameRefused.reason``):
``stream_garbage`` (not a frame of this version), ``stream_forged`` (bad tag),
``stream_stale`` / ``stream_replayed`` (the header's ``(nonce, sent_at)`` through a
``ReplayGuard``: a header captured off the wire cannot open a second body),
``stream_oversized`` (``length > limit``: refused without reading the body).

``limit`` for push-pull is ``codec.push_pull_limit(max_members)``: the packet of a table of
``max_members`` members, each at most ``codec.UPDATE_MAX`` bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct

from .replay import ReplayGuard

MAGIC = b"SG"
FRAME_VERSION = 1
_FIXED = struct.Struct(">2sBIQ8s")
TAG_SIZE = 16
HEADER_SIZE = _FIXED.size + TAG_SIZE  # 39
_DOMAIN = b"shoal-frame\0"

REFUSALS = ("stream_garbage", "stream_forged", "stream_stale", "stream_replayed",
            "stream_oversized")


class FrameRefused(Exception):
    """A frame header was refused; ``reason`` is one of ``REFUSALS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _tag(key: bytes, fixed: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + fixed, hashlib.sha256).digest()[:TAG_SIZE]


def seal_header(key: bytes, length: int, sent_at: float, nonce: bytes | None = None) -> bytes:
    """The header announcing a packet of ``length`` bytes, sent at ``sent_at`` (unix seconds)."""
    nonce = secrets.token_bytes(8) if nonce is None else nonce
    fixed = _FIXED.pack(MAGIC, FRAME_VERSION, length, int(sent_at * 1000), nonce)
    return fixed + _tag(key, fixed)


def open_header(key: bytes, header: bytes, *, limit: int, guard: ReplayGuard, now: float) -> int:
    """The announced length, or ``FrameRefused``.  ``header`` is exactly ``HEADER_SIZE`` bytes."""
    fixed, tag = header[:_FIXED.size], header[_FIXED.size:]
    magic, version, length, sent_at_ms, nonce = _FIXED.unpack(fixed)
    if magic != MAGIC or version != FRAME_VERSION:
        raise FrameRefused("stream_garbage")
    if not hmac.compare_digest(tag, _tag(key, fixed)):
        raise FrameRefused("stream_forged")
    reason = guard.check(nonce, sent_at_ms / 1000.0, now)
    if reason is not None:
        raise FrameRefused(f"stream_{reason}", f"sent {sent_at_ms}")
    if length > limit:
        raise FrameRefused("stream_oversized", f"{length} bytes > {limit}")
    return length
