"""What playback answers, for both HTTP paths (node.http.fastlane and node.http.routes_playback):
which record is playable (the ready-record memo) and the plan of one object's answer.

- :class:`ReadyRecords`: ready records read in the last second (``READY_CACHE_TTL``), one
  storage read per video at a time.  Every path that answers a committed object (public
  playback, the internal hop, a cache hit) asks it first, so a deleted video stops being
  served by every node within ``READY_CACHE_TTL`` plus one record read, even when the eviction
  notice of its DELETE is lost.
- :func:`ready_record`: the record, or the domain errors :class:`VideoNotFound` (unknown, or
  deleted) and :class:`NotReady` (with its state).  node.http maps them to statuses.
- :func:`object_plan` -> :class:`Plan`: status, headers and byte range of a committed object's
  answer (ETag/If-None-Match 304, one Range 206/416, HEAD).  The HTTP layer sends it.
- :func:`parse_range`: the Range header (RFC 9110 section 14), pure; see its section below.

Exception tree::

    PlayError
    +-- VideoNotFound      no such video, or it is deleted
    +-- NotReady           .state: it exists but no output is committed
    +-- ObjectNotFound     an internal request for anything but the ready epoch's HLS objects
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import storage
from storage.http1 import RequestHead

from node.records import layout, lifecycle
from node.play.segcache import internal_hls_path, internal_key

READY_CACHE_TTL = 1.0  # seconds a ready record is trusted before re-reading (bounds delete lag)
# While storage cannot be reached, a ready record read at most this long ago still plays
# (stale-if-error, RFC 5861): a node cut from storage keeps serving its warm cached segments.
READY_STALE_IF_UNREACHABLE = 300.0
READY_CACHE_MAX = 10_000
SEGMENT_CACHE_CONTROL = "public, max-age=31536000, immutable"
PLAYLIST_CACHE_CONTROL = "public, max-age=5"
BAD_RANGE_BODY = b'{"error":{"code":"bad_range","message":"range not satisfiable"}}'


# ---- Range (RFC 9110 section 14), pure ----------------------------------------------------------------
#
# Single ranges only: ``bytes=a-b``, ``bytes=a-`` and suffix ``bytes=-n``.  A
# request for several ranges is answered with the whole body (200), which RFC
# 9110 allows ("a server MAY ignore the Range header field").
#
# Numbers of any length are read (a 5,000-digit one too, which ``int()`` refuses
# past 4,300 digits): a number over :data:`MAX_DIGITS` digits is larger than any
# object, so as a first byte it makes the range unsatisfiable (416 with
# ``Content-Range: bytes */<size>``), as a last byte it means "to the end", and as
# a suffix length it means "the whole object".  Both playback paths (the fast
# lane and hypercorn) answer from this one function, so they answer alike.

MAX_DIGITS = 18  # 10**18 bytes: more than any object
_SINGLE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class Unsatisfiable(Exception):
    """416: the range lies outside the representation."""


def _number(digits: str) -> int:
    """The value of a run of ASCII digits; one too long to matter is "larger than any object"."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_DIGITS else 10 ** MAX_DIGITS


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive, or None for "send the whole body".  Raises Unsatisfiable."""
    if not header:
        return None
    header = header.strip()
    if "," in header:
        return None  # multiple ranges: whole body
    m = _SINGLE.fullmatch(header.replace(" ", ""))
    if not m:
        return None  # not a bytes range we understand: ignore it, as RFC 9110 allows
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        n = _number(last)
        if n == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - n), size - 1
    start = _number(first)
    if start >= size:
        raise Unsatisfiable()
    end = size - 1 if last == "" else min(_number(last), size - 1)
    if end < start:
        return None  # invalid: ignore
    return start, end


class PlayError(Exception):
    """A video that cannot be played now."""


class VideoNotFound(PlayError):
    """No such video, or it is deleted."""


class NotReady(PlayError):
    """The video exists but has no committed output (``state`` says where it is)."""

    def __init__(self, state: str) -> None:
        super().__init__(f"the video is {state}; playback starts when it is ready")
        self.state = state
        self.extra = {"state": state}  # beside code and message in the error body (node.http.errors)


class ObjectNotFound(PlayError):
    """An internal (hop) request for an object that is not a committed HLS output of the epoch
    the current ready record names: unknown, deleted, not ready, or another epoch."""


# ---- the ready-record memo ------------------------------------------------------------------------------

class ReadyRecords:
    """A small TTL cache of ready records: playback re-reads storage at most once a second.

    :meth:`current` (every playback path uses it) reads once per video at a time: while one
    reader renews an expired record, the others keep the record of a moment ago instead of all
    waiting on storage together.  Every answer is still from a record read at most
    ``READY_CACHE_TTL`` before the request or during it, so a deleted video stops playing
    within that second (plus one record read).  Only while storage cannot be reached
    (:class:`storage.StorageUnavailable`) is a record read at most ``READY_STALE_IF_UNREACHABLE``
    ago used instead, so warm cached segments keep playing on a node cut from storage; a DELETE
    needs storage, so what it could make stale is only a delete done through another node whose
    eviction notice was lost.  The clock is injected.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[str, tuple[float, dict]] = {}  # Invariant: at most READY_CACHE_MAX
        self._renewing: set[str] = set()

    def get(self, vid: str) -> dict | None:
        hit = self._items.get(vid)
        if hit and hit[0] > self._clock():
            return hit[1]
        return None

    def put(self, vid: str, rec: dict) -> None:
        if len(self._items) >= READY_CACHE_MAX:
            self._items.clear()
        self._items[vid] = (self._clock() + READY_CACHE_TTL, rec)

    def forget(self, vid: str) -> None:
        self._items.pop(vid, None)

    async def current(self, ctx: Any, vid: str) -> dict:
        """The ready record; raises as :func:`ready_record` does."""
        rec = self.get(vid)
        if rec is not None:
            return rec
        hit = self._items.get(vid)
        if vid in self._renewing and hit is not None:
            return hit[1]  # someone is reading it now, after it expired
        self._renewing.add(vid)
        try:
            return await ready_record(ctx, self, vid)
        except storage.StorageUnavailable:
            if hit is not None and hit[0] - READY_CACHE_TTL + READY_STALE_IF_UNREACHABLE > self._clock():
                return hit[1]  # stale-if-error: storage is out of reach, not the video gone
            self.forget(vid)
            raise
        except (PlayError, storage.StorageError):
            self.forget(vid)
            raise
        finally:
            self._renewing.discard(vid)


async def ready_record(ctx: Any, cache: ReadyRecords, vid: str) -> dict:
    """The record of ``vid`` when it is ``ready`` (``ctx.videos`` reads it).  Raises
    VideoNotFound, NotReady, or a storage error."""
    if not layout.valid_id(vid):
        raise VideoNotFound(vid)
    rec = cache.get(vid)
    if rec is not None:
        return rec
    v = await ctx.videos.get(vid)
    if v is None or v.doc["state"] == lifecycle.DELETED:
        raise VideoNotFound(vid)
    if v.doc["state"] != lifecycle.READY:
        raise NotReady(v.doc["state"])
    cache.put(vid, v.doc)
    return v.doc


async def internal_object_key(ctx: Any, records: ReadyRecords, vid: str, rest: str) -> str:
    """The storage key a hop (``/v1/internal/objects/<vid>/<rest>``) may be answered with: a
    committed HLS object the current ready record names (``layout.hls_object_key``: its
    ``out/<ready_epoch>/``, or a chunked video's committed unit epoch), of a video that is not
    deleted.  Raises ObjectNotFound, or a storage error reading the record."""
    key = internal_key(vid, rest)
    if key is None:
        raise ObjectNotFound(f"{vid}/{rest}")
    try:
        rec = await records.current(ctx, vid)
    except (VideoNotFound, NotReady):
        raise ObjectNotFound(f"{vid}/{rest}") from None
    path = internal_hls_path(rest)
    if path is None or layout.hls_object_key(vid, rec, path) != key:
        raise ObjectNotFound(f"{vid}/{rest}: not what the ready record names")
    return key


# ---- the answer plan ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    status: int
    headers: list[tuple[str, str]]
    start: int  # first byte of the object to send
    length: int  # bytes of body to send (0 for HEAD and 304)
    body: bytes | None = None  # sent instead of the object (the 416's error)


def media_headers(path: str) -> tuple[str, str]:
    """``(Content-Type, Cache-Control)`` of a committed output ``path`` (pure): segments and the
    poster never change under their URL; playlists are re-read after a few seconds."""
    if path.endswith(".ts"):
        return "video/mp2t", SEGMENT_CACHE_CONTROL
    if path == layout.POSTER:
        return "image/jpeg", SEGMENT_CACHE_CONTROL
    return "application/vnd.apple.mpegurl", PLAYLIST_CACHE_CONTROL


def has_output(rec: dict, path: str) -> bool:
    """Did the ``ready`` commit of ``rec`` store output ``path``?  Every HLS path of a ready
    record, and the poster only when one was made (``poster: true``)."""
    return path != layout.POSTER or bool(rec.get("poster"))


def count_served(events: Any, path: str) -> None:
    """Count one answered output of ``path`` on ``events`` (node.metrics.Events), either path."""
    if path.endswith(".ts"):
        events.hls_segments_served.inc()
    elif path == layout.POSTER:
        events.posters_served.inc()
    else:
        events.hls_playlists_served.inc()


def object_plan(head: RequestHead, *, kind: str, size: int, etag: str, path: str) -> Plan:
    """The answer to ``head`` for the committed object at output ``path`` (``master.m3u8``,
    ``720p/seg_00003.ts``, ``poster.jpg``), ``size`` bytes, for both paths: ETag /
    If-None-Match (304), one Range (206/416), HEAD.  Several ranges in one request are answered
    200 with the whole body (see node.play.ranges).  ``kind`` "internal" is a hop: the whole
    object, always."""
    if kind == "internal":
        return Plan(200, [("ETag", etag), ("Content-Type", "application/octet-stream"),
                          ("Content-Length", str(size))], 0, size)
    content_type, cache_control = media_headers(path)
    headers = [("Content-Type", content_type), ("Cache-Control", cache_control),
               ("ETag", etag), ("Accept-Ranges", "bytes")]
    inm = head.headers.get("if-none-match")
    if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        return Plan(304, headers + [("Content-Length", "0")], 0, 0)  # as Quart says it
    try:
        rng = parse_range(head.headers.get("range"), size)
    except Unsatisfiable:
        headers[0] = ("Content-Type", "application/json")
        return Plan(416, headers + [("Content-Range", f"bytes */{size}"),
                                    ("Content-Length", str(len(BAD_RANGE_BODY)))],
                    0, len(BAD_RANGE_BODY), BAD_RANGE_BODY)
    status, start, length = 200, 0, size
    if rng is not None:
        status, start, length = 206, rng[0], rng[1] - rng[0] + 1
        headers.append(("Content-Range", f"bytes {rng[0]}-{rng[1]}/{size}"))
    headers.append(("Content-Length", str(length)))
    return Plan(status, headers, start, 0 if head.method == "HEAD" else length)
