"""The fast lane: HLS objects in this node's cache answered with ``sendfile``, ahead of hypercorn.

Every connection to the node's HTTP port starts here.  The lane reads one request head at a
time; when it is a ``GET`` or ``HEAD`` of a committed HLS object that this node's segment cache
holds (the owner's hit, or another node's hop to us), the lane answers it itself: headers from
:func:`plan`, the body straight from the cache file with ``os.sendfile`` (no copy through
Python, no ASGI, no thread).  A miss, a hop to the owner or a storage read go through the
segment cache as in node.http.routes_playback and are sent from memory; an object storage does not
have (404) or cannot give (503) is answered here too, since trying again would wait as long
again.  Anything else (another path, a video unknown or not ready, HTTP/1.0, a request with a
body, a 416) is handed to hypercorn together with the bytes already read, and the connection
stays with hypercorn.

Same answers either way: status, ``ETag``, ``Cache-Control``, ``Content-Type``, ``Range``
(one range 206; several ranges 200 with the whole body), ``If-None-Match`` (304), CORS and
``X-Served-By`` are those of node.http.routes_playback; a test compares the two paths header by header.

Why: a 770 KB segment cost ~1.2 ms of Python through Quart/hypercorn/h11 plus a thread hop to
read the file; the lane costs a parse, a dict lookup and one ``sendfile`` (docs/benchmarks.md,
Streaming).  ``cache.fast_lane: false`` in cluster.yml turns it off.

The cache files were written by this process moments or minutes before and are normally in the
page cache; a ``sendfile`` from a cold disk would stall the event loop for the read.

Pure parts (:func:`parse_head`, :func:`route`, :func:`plan`) are tested without sockets.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Awaitable, Callable

import trio

import storage

from node.records import layout

from node import log
from node.http.errors import ApiError, error_doc, storage_failure
from node.http.ranges import Unsatisfiable, parse_range
from node.play.segcache import internal_key

MAX_HEAD = 16 * 1024  # a longer request head goes to hypercorn (which answers 431/400)
RECV_SIZE = 64 * 1024
SEGMENT_CACHE_CONTROL = "public, max-age=31536000, immutable"
PLAYLIST_CACHE_CONTROL = "public, max-age=5"
# node.http.app adds these to every answer of the full path; the lane to its own
EXPOSE_HEADERS = ("Location, ETag, Content-Range, Accept-Ranges, Upload-Offset, Upload-Length, "
                  "Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Retry-After, X-Served-By")
_PLAYBACK = re.compile(r"^/v1/videos/([^/?#]+)/hls/([^?#]+)$")
_INTERNAL = re.compile(r"^/v1/internal/objects/([^/?#]+)/([^?#]+)$")


# ---- pure ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Head:
    """One parsed HTTP/1.1 request head."""

    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "

    @property
    def keep_alive(self) -> bool:
        return "close" not in self.headers.get("connection", "").lower()


def parse_head(raw: bytes) -> Head | None:
    """The head (request line and fields, without the final blank line), or None when the fast
    lane does not answer it: not HTTP/1.1, not GET/HEAD, a body, a folded or malformed field."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1" or parts[0] not in ("GET", "HEAD"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            return None
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0" or "expect" in headers:
        return None
    return Head(parts[0], parts[1], headers)


def route(target: str) -> tuple[str, str, str] | None:
    """``("playback", vid, hls path)`` or ``("internal", vid, "out/<epoch>/<hls path>")``, or None."""
    m = _PLAYBACK.match(target)
    if m is not None:
        vid, rest = m.groups()
        if layout.valid_id(vid) and layout.valid_hls_path(rest):
            return "playback", vid, rest
        return None
    m = _INTERNAL.match(target)
    if m is not None and internal_key(m.group(1), m.group(2)) is not None:  # committed HLS outputs only
        return "internal", m.group(1), m.group(2)
    return None


@dataclass(frozen=True)
class Plan:
    status: int
    headers: list[tuple[str, str]]
    start: int  # first byte of the object to send
    length: int  # bytes of body to send (0 for HEAD and 304)
    body: bytes | None = None  # sent instead of the object (the 416's error)


BAD_RANGE_BODY = b'{"error":{"code":"bad_range","message":"range not satisfiable"}}'


def object_plan(head: Head, *, kind: str, size: int, etag: str, is_segment: bool) -> Plan:
    """The answer to ``head`` for a committed object of ``size`` bytes, for both paths (this lane
    and node.http.routes_playback): ETag/If-None-Match (304), one Range (206/416), HEAD.  Several ranges
    in one request are answered 200 with the whole body (see node.http.ranges)."""
    if kind == "internal":
        return Plan(200, [("ETag", etag), ("Content-Type", "application/octet-stream"),
                          ("Content-Length", str(size))], 0, size)
    headers = [("Content-Type", "video/mp2t" if is_segment else "application/vnd.apple.mpegurl"),
               ("Cache-Control", SEGMENT_CACHE_CONTROL if is_segment else PLAYLIST_CACHE_CONTROL),
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


def plan(head: Head, *, kind: str, size: int, etag: str, is_segment: bool, node_id: str,
         date: str) -> Plan | None:
    """:func:`object_plan` with the headers node.http.app adds to every answer; None for a 416
    (hypercorn answers it)."""
    p = object_plan(head, kind=kind, size=size, etag=etag, is_segment=is_segment)
    if p.status == 416:
        return None
    return Plan(p.status, _common(p.headers, node_id, date), p.start, p.length)


def _common(headers: list[tuple[str, str]], node_id: str, date: str) -> list[tuple[str, str]]:
    return headers + [("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", EXPOSE_HEADERS),
                      ("X-Served-By", node_id), ("Date", date)]


_REASONS = {200: "OK", 206: "Partial Content", 304: "Not Modified", 404: "Not Found",
            503: "Service Unavailable"}


def encode_head(p: Plan, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {p.status} {_REASONS[p.status]}"] + [f"{k}: {v}" for k, v in p.headers]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# ---- the lane -----------------------------------------------------------------------------------------

class _Replay:
    """A trio stream that first yields ``prefix`` (the bytes the lane read) to hypercorn."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self.socket = stream.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


class FastLane:
    """Answers cache hits on a connection until a request it does not answer; see the module doc."""

    def __init__(self, ctx: Any, *, keep_alive_timeout: float = 75.0, read_timeout: float = 120.0) -> None:
        self._ctx = ctx
        self._keep_alive = keep_alive_timeout
        self._read_timeout = read_timeout
        self._date_at = 0
        self._date = ""
        self.answered = 0
        self.handed_over = 0

    def wrap(self, server: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """hypercorn's ``TCPServer(app, config, context, state, stream)`` with the lane in front."""

        async def front(app: Any, config: Any, context: Any, state: Any, stream: Any) -> None:
            if not isinstance(stream, trio.SocketStream):  # TLS: hypercorn does it all
                await server(app, config, context, state, stream)
                return
            try:
                rest = await self.serve(stream)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                rest = None  # the client went away
            except Exception as e:  # never take the server down with one connection
                log.error("fast_lane_error", error=f"{type(e).__name__}: {e}")
                rest = None
            if rest is None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                return
            self.handed_over += 1
            await server(app, config, context, state, _Replay(stream, rest))

        return front

    def _http_date(self) -> str:
        now = int(time.time())
        if now != self._date_at:
            self._date_at, self._date = now, formatdate(now, usegmt=True)
        return self._date

    async def serve(self, stream: trio.SocketStream) -> bytes | None:
        """Answer requests until one is not ours: returns the unread bytes for hypercorn, starting
        with that request; None when the connection is done (closed, idle, or asked to close)."""
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            timeout = self._keep_alive if not buf else self._read_timeout
            with trio.move_on_after(timeout):
                while end < 0:
                    if len(buf) > MAX_HEAD:
                        return buf
                    data = await stream.receive_some(RECV_SIZE)
                    if not data:
                        return None  # the client closed (a half request is dropped, as hypercorn does)
                    buf += data
                    end = buf.find(b"\r\n\r\n", max(0, len(buf) - len(data) - 3))
            if end < 0:
                return None  # idle or too slow
            head = parse_head(buf[:end])
            answer = await self._answer(head) if head is not None else None
            if answer is None:
                return buf
            p, source = answer
            try:
                # a client that takes longer than read_timeout to take one answer is dropped
                with trio.fail_after(self._read_timeout):
                    await self._send(stream, p, source, head.keep_alive)
            except trio.TooSlowError:
                return None
            finally:
                if isinstance(source, int):
                    os.close(source)
            self.answered += 1
            if not head.keep_alive:
                return None
            buf = buf[end + 4:]
            await trio.lowlevel.checkpoint()

    async def _answer(self, head: Head) -> tuple[Plan, int | bytes] | None:
        """The plan and the body's source (an open cache file, or bytes) for a request we
        answer, else None (hypercorn will, errors included)."""
        ctx = self._ctx
        r = route(head.target)
        if r is None or ctx.cache is None or ctx.ready_records is None:
            return None
        kind, vid, rest = r
        if kind == "playback":
            try:
                rec = await ctx.ready_records.current(ctx, vid)
            except (ApiError, storage.StorageError):
                return None  # 404/409/503: hypercorn answers with the error body
            key = layout.out_prefix(vid, rec["ready_epoch"]) + rest
            hit = ctx.cache.local_file(vid, key)
        else:
            key = internal_key(vid, rest)
            hit = ctx.cache.peer_file(key)
        source: int | bytes | None = None
        if hit is not None:
            path, size, etag = hit
            try:
                source = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # evicted since the lookup
                source = None
        if source is None:
            try:
                if kind == "playback":
                    source, etag = await ctx.cache.fetch(vid, key)
                else:
                    source, etag = await ctx.cache.serve_peer(key)
            except storage.NotFound:
                what = "no such playlist or segment" if kind == "playback" else "no such object"
                return self._error(ApiError(404, "not_found", what), head)
            except storage.StorageError as e:  # answered here: a second try would wait as long again
                return self._error(storage_failure(ctx, e, head.target), head)
            size = len(source)
        p = plan(head, kind=kind, size=size, etag=etag, is_segment=rest.endswith(".ts"),
                 node_id=ctx.node_id, date=self._http_date())
        if p is None:
            if isinstance(source, int):
                os.close(source)
            return None
        if kind == "playback":
            ctx.count("hls_segments_served" if rest.endswith(".ts") else "hls_playlists_served")
        else:
            ctx.count("hops_served")
        ctx.count("fast_lane_responses")
        return p, source

    def _error(self, e: ApiError, head: Head) -> tuple[Plan, bytes]:
        """An error answer with the body and headers node.http.app gives it."""
        body = (json.dumps(error_doc(e.code, e.message, **e.extra), separators=(",", ":")) + "\n").encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if e.retry_after is not None:
            headers.append(("Retry-After", str(e.retry_after)))
        self._ctx.count("fast_lane_responses")
        length = 0 if head.method == "HEAD" else len(body)
        return Plan(e.status, _common(headers, self._ctx.node_id, self._http_date()), 0, length), body

    async def _send(self, stream: trio.SocketStream, p: Plan, source: int | bytes, keep_alive: bool) -> None:
        sock = stream.socket
        head = encode_head(p, keep_alive)
        if isinstance(source, bytes):
            await stream.send_all(head + source[p.start:p.start + p.length] if p.length else head)
            return
        data = memoryview(head)
        flags = socket.MSG_MORE if p.length else 0
        while data:
            n = await sock.send(data, flags)
            data = data[n:]
        fd = source
        offset, left = p.start, p.length
        out = sock.fileno()
        while left > 0:
            try:
                n = os.sendfile(out, fd, offset, left)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            if n == 0:
                raise OSError(f"cache file ended {left} bytes early")
            offset += n
            left -= n
