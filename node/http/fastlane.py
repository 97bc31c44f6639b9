"""The fast lane: HLS objects in this node's cache answered with ``sendfile``, ahead of hypercorn.

Every connection to the node's HTTP port starts here.  The lane reads one request head at a
time; when it is a ``GET`` or ``HEAD`` of a committed HLS object that this node's segment cache
holds (the owner's hit, or another node's hop to us), the lane answers it itself: headers from
:func:`plan`, the body straight from the cache file with ``os.sendfile`` (no copy through
Python, no ASGI, no thread).  A miss, a hop to the owner or a storage read go through the
segment cache as in node.http.routes_playback and are sent from memory; an object storage does not
have (404) or cannot give (503) is answered here too, since trying again would wait as long
again.  Anything else (another path, a video unknown or not ready, an internal request without
a valid ``X-Shoal-Hop`` proof or for another epoch than the ready one, HTTP/1.0, a request
with a body, a head the strict codec refuses or one with a bare-LF line, a 416) is handed to
hypercorn together with the bytes already read, and the connection stays with hypercorn.
Two things are refused here with 400 and the connection closed (docs/security.md, HTTP
parsing): bytes whose first line cannot be an HTTP request line (:func:`could_be_request`, at
once rather than after ``read_timeout``), and a head whose body framing is ambiguous
(:func:`framing_error`: Content-Length with Transfer-Encoding, or a coding other than chunked).

What may be answered (the ready-record memo, the epoch check of a hop) and how (the answer
plan) is node.play's; heads are read and written with storage.http1.  This module is the
socket and ``sendfile`` part.

Same answers either way: status, ``ETag``, ``Cache-Control``, ``Content-Type``, ``Range``
(one range 206; several ranges 200 with the whole body), ``If-None-Match`` (304), CORS and
``X-Served-By`` are those of node.http.routes_playback; a test compares the two paths header by header.

Why: a 770 KB segment cost ~1.2 ms of Python through Quart/hypercorn/h11 plus a thread hop to
read the file; the lane costs a parse, a dict lookup and one ``sendfile`` (docs/benchmarks.md,
Streaming).  ``cache.fast_lane: false`` in cluster.yml turns it off.

Each request the lane answers is measured and logged once (node.http.edge: ``playback_hit``
for a cache file, ``playback_miss`` / ``playback_hop`` for an owner's storage read / a
non-owner's, ``internal_hop`` for another node's hop, ``other`` for a refusal); a request handed
to hypercorn is left to the app's middleware.

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
from email.utils import formatdate
from typing import Any, Awaitable, Callable, Mapping

import trio

import storage
from storage import http1
from storage.http1 import RequestHead

from node.records import layout

from node import log, peer_auth, play
from node.http import edge
from node.http.edge import Access
from node.http.errors import ApiError, error_doc, storage_failure
from node.play import Plan, object_plan
from node.play.segcache import internal_key

MAX_HEAD = http1.MAX_HEAD  # a longer request head goes to hypercorn (which answers 431/400)
RECV_SIZE = 64 * 1024
_PLAYBACK = re.compile(r"/v1/videos/([^/?#]+)/hls/([^?#]+)")
_POSTER = re.compile(r"/v1/videos/([^/?#]+)/(poster\.jpg)")
_INTERNAL = re.compile(r"/v1/internal/objects/([^/?#]+)/([^?#]+)")

Head = RequestHead  # one parsed request head (storage.http1's codec)


# ---- pure ---------------------------------------------------------------------------------------------

# a prefix of an HTTP/1 request line as h11 reads one: method SP target SP HTTP/d.d (then CRLF)
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]"
_TARGET = rb"[\x21-\x7e]"
_VERSION_PREFIX = rb"(?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.(?:[0-9]\r?)?)?)?)?)?)?)?)?"
_LINE_START = re.compile(rb"%s*|%s+ %s*|%s+ %s+ %s" % (_TOKEN, _TOKEN, _TARGET, _TOKEN, _TARGET, _VERSION_PREFIX))
_LINE = re.compile(rb"%s+ %s+ HTTP/[0-9]\.[0-9]\r?" % (_TOKEN, _TARGET))


def could_be_request(data: bytes) -> bool:
    """False when ``data`` (the bytes of a request not yet framed) cannot begin an HTTP/1
    request: its first line, whole or so far, is not (a prefix of) ``METHOD SP target SP
    HTTP/d.d`` as h11 reads it (random bytes, a TLS ClientHello, an empty first line)."""
    end = data.find(b"\n")
    if end < 0:
        return _LINE_START.fullmatch(data) is not None
    return _LINE.fullmatch(data, 0, end) is not None


def framing_error(h: Mapping[str, str]) -> str | None:
    """Why the body framing of a request with the fields ``h`` (lower-case names, repeated
    fields joined by ", ") is ambiguous (request smuggling), or None: both ``Content-Length``
    and ``Transfer-Encoding``, or a ``Transfer-Encoding`` other than exactly ``chunked``.  Such
    a request is refused with 400 ``bad_framing`` and its connection closed, on both paths (the
    lane here, node.http.app for what hypercorn reads)."""
    te = h.get("transfer-encoding")
    if te is None:
        return None
    if "content-length" in h:
        return "a request may not have both Content-Length and Transfer-Encoding"
    if te.strip().lower() != "chunked":
        return "the only Transfer-Encoding accepted is 'chunked'"
    return None


def parse_head(raw: bytes) -> Head | None:
    """The head (request line and fields, without the final blank line), or None when the fast
    lane does not answer it: malformed for the codec (storage.http1: bare LF, folded or malformed
    field, bad Content-Length), not HTTP/1.1, not GET/HEAD, or a body."""
    try:
        head = http1.parse_request_head(raw)
    except http1.ProtocolError:
        return None
    return ours(head)


def ours(head: Head) -> Head | None:
    """``head`` if the lane may answer it (HTTP/1.1, GET or HEAD, no body), else None."""
    if head.version != "HTTP/1.1" or head.method not in ("GET", "HEAD"):
        return None
    h = head.headers
    if "transfer-encoding" in h or h.get("content-length", "0") != "0" or "expect" in h:
        return None
    return head


def route(target: str) -> tuple[str, str, str] | None:
    """``("playback", vid, output path)`` (an HLS path, or ``poster.jpg``) or
    ``("internal", vid, "out/<epoch>/<output path>")``, or None."""
    m = _PLAYBACK.fullmatch(target)
    if m is not None:
        vid, rest = m.groups()
        if layout.valid_id(vid) and layout.valid_hls_path(rest):
            return "playback", vid, rest
        return None
    m = _POSTER.fullmatch(target)
    if m is not None:
        return ("playback", m.group(1), layout.POSTER) if layout.valid_id(m.group(1)) else None
    m = _INTERNAL.fullmatch(target)
    if m is not None and internal_key(m.group(1), m.group(2)) is not None:  # committed HLS outputs only
        return "internal", m.group(1), m.group(2)
    return None


def plan(head: Head, *, kind: str, size: int, etag: str, path: str, node_id: str,
         date: str, origins: tuple[str, ...] = (edge.ANY,)) -> Plan | None:
    """:func:`node.play.object_plan` with the headers node.http.app adds to every answer; None
    for a 416 (hypercorn answers it)."""
    p = object_plan(head, kind=kind, size=size, etag=etag, path=path)
    if p.status == 416:
        return None
    # an internal answer goes to another node, never to a page: no CORS headers (as the app)
    cors_headers = [] if kind == "internal" else edge.answer_headers(origins, head.headers.get("origin"))
    return Plan(p.status, _common(p.headers, node_id, date, cors_headers), p.start, p.length)


def _common(headers: list[tuple[str, str]], node_id: str, date: str,
            cors_headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return headers + cors_headers + [("X-Served-By", node_id), ("Date", date)]


def encode_head(p: Plan, keep_alive: bool) -> bytes:
    return http1.encode_response_head(p.status, p.headers, keep_alive=keep_alive)


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
        self._access = Access(ctx.metrics, log_lines=ctx.cfg.access_log)
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
        with that request; None when the connection is done (closed, idle, or asked to close).

        Heads are framed by storage.http1 as h11 frames them; a head with a line ended by a bare
        LF is handed to hypercorn untouched, so both read the same requests from the same bytes."""
        buf = http1.HeadBuffer()
        while True:
            timeout = self._keep_alive if not len(buf) else self._read_timeout
            framed = None
            with trio.move_on_after(timeout):
                while True:
                    try:
                        framed = buf.peek_head()
                    except http1.HeadTooLarge:
                        return buf.data
                    if framed is not None:
                        break
                    data = await stream.receive_some(RECV_SIZE)
                    if not data:
                        return None  # the client closed (a half request is dropped, as hypercorn does)
                    buf.feed(data)
                    if not could_be_request(buf.data):  # refused now, not after read_timeout
                        await self._refuse(stream, "bad_request", "not an HTTP/1.1 request", "GET")
                        return None
            if framed is None:
                return None  # idle or too slow
            t0 = time.perf_counter()
            head = None
            if framed.crlf:
                try:
                    parsed = http1.parse_request_head(framed.head)
                except http1.ProtocolError:
                    parsed = None  # hypercorn answers it (and node.http.app checks the framing)
                if parsed is not None:
                    why = framing_error(parsed.headers)
                    if why is not None:
                        await self._refuse(stream, "bad_framing", why, parsed.method)
                        return None
                    head = ours(parsed)
            answer = await self._answer(head) if head is not None else None
            if answer is None:
                return buf.data
            p, source, klass = answer
            sent = 0  # the status, once the whole answer is handed to the socket
            try:
                # a client that takes longer than read_timeout to take one answer is dropped
                with trio.fail_after(self._read_timeout):
                    await self._send(stream, p, source, head.keep_alive)
                sent = p.status
            except trio.TooSlowError:
                return None
            finally:
                if isinstance(source, int):
                    os.close(source)
                self._access.done(head.method, klass, sent, 0, p.length if sent else 0, time.perf_counter() - t0)
            self.answered += 1
            if not head.keep_alive:
                return None
            buf.take(framed.size)
            await trio.lowlevel.checkpoint()

    async def _answer(self, head: Head) -> tuple[Plan, int | bytes, str] | None:
        """The plan, the body's source (an open cache file, or bytes) and the route class
        (node.http.edge) of a request we answer, else None (hypercorn will, errors included)."""
        ctx = self._ctx
        r = route(head.target)
        if r is None or ctx.cache is None:
            return None
        kind, vid, rest = r
        try:
            if kind == "playback":
                rec = await ctx.ready_records.current(ctx, vid)
                if not play.has_output(rec, rest):
                    return None  # hypercorn answers the 404 (a video committed without one)
                key = layout.hls_object_key(vid, rec, rest)
                hit = ctx.cache.local_file(vid, key)
            else:
                peer_auth.check(getattr(ctx, "cluster_key", None), head.headers.get(peer_auth.HEADER.lower()),
                                head.method, head.target, time.time())
                key = await play.internal_object_key(ctx, ctx.ready_records, vid, rest)
                hit = ctx.cache.peer_file(key)
        except (play.PlayError, peer_auth.PeerAuthError, storage.StorageError):
            return None  # 401/403/404/409/503: hypercorn answers with the error body (and logs)
        source: int | bytes | None = None
        klass = "internal_hop" if kind == "internal" else "playback_hit"  # node.http.edge
        if hit is not None:
            path, size, etag = hit
            try:
                source = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # evicted since the lookup
                source = None
        if source is None:
            if kind == "playback":
                klass = "playback_miss" if ctx.cache.owner_of(vid) == ctx.node_id else "playback_hop"
            try:
                if kind == "playback":
                    source, etag = await ctx.cache.fetch(vid, key)
                else:
                    source, etag = await ctx.cache.serve_peer(key)
            except storage.NotFound:
                what = "no such playlist or segment" if kind == "playback" else "no such object"
                return *self._error(ApiError(404, "not_found", what), head.method, head.headers.get("origin"),
                                    internal=kind == "internal"), klass
            except storage.StorageError as e:  # answered here: a second try would wait as long again
                return *self._error(storage_failure(ctx, e, head.target), head.method,
                                    head.headers.get("origin"), internal=kind == "internal"), klass
            size = len(source)
        p = plan(head, kind=kind, size=size, etag=etag, path=rest,
                 node_id=ctx.node_id, date=self._http_date(), origins=ctx.cfg.cors.origins)
        if p is None:
            if isinstance(source, int):
                os.close(source)
            return None
        events = ctx.metrics.events
        if kind == "playback":
            play.count_served(events, rest)
        else:
            events.hops_served.inc()
        events.fast_lane_responses.inc()
        return p, source, klass

    async def _refuse(self, stream: trio.SocketStream, code: str, message: str, method: str) -> None:
        """Answer 400 ``code`` and close: the caller drops the connection (nothing after the
        refused bytes is read as a request)."""
        t0 = time.perf_counter()
        self._ctx.metrics.events.http_refused.inc()
        p, body = self._error(ApiError(400, code, message), method)
        sent = 0
        try:
            with trio.move_on_after(self._read_timeout):
                await self._send(stream, p, body, False)
                sent = p.status
        finally:
            self._access.done(method, "other", sent, 0, p.length if sent else 0, time.perf_counter() - t0)

    def _error(self, e: ApiError, method: str, origin: str | None = None, *,
               internal: bool = False) -> tuple[Plan, bytes]:
        """An error answer with the body and headers node.http.app gives it (``internal``: to
        another node, without CORS headers)."""
        body = (json.dumps(error_doc(e.code, e.message, **e.extra), separators=(",", ":")) + "\n").encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if e.retry_after is not None:
            headers.append(("Retry-After", str(e.retry_after)))
        self._ctx.metrics.events.fast_lane_responses.inc()
        length = 0 if method == "HEAD" else len(body)
        cors_headers = [] if internal else edge.answer_headers(self._ctx.cfg.cors.origins, origin)
        return Plan(e.status, _common(headers, self._ctx.node_id, self._http_date(), cors_headers), 0, length), body

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
