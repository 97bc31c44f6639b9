"""Kept-alive HTTP/1.1 connections, shared by every raw client path (raw S3 in storage.raw, the
hop between nodes in node.play.segcache), the one loop that reads a head off a stream, and the
small client over them.

:class:`ConnectionPool` keeps idle connections per address: at most ``max_idle`` each (a
connection given back beyond that is closed), none older than ``max_age`` seconds when that is
set, and none that has bytes or an EOF waiting (the server closed it, or said something we did
not ask for).  A connection that failed, or whose answer asked to close, is never given back:
callers close it (:func:`close_quietly`).  The clock is injected.

:func:`read_head` reads from a trio stream into a :class:`storage.http1.HeadBuffer` until one
head is complete (bounded by ``http1.MAX_HEAD``).

:class:`Http1Client` (``get``/``post``/``request(addr, method, path, headers, body) -> Answer``)
fetches a whole body whose length the answer names (``Content-Length``; a node's internal
endpoints always send one), reading it straight into one preallocated buffer.  Heads are written
and read with the one codec (:mod:`storage.http1`); connections come from a pool and are reused;
one that failed, timed out or was asked to close is dropped.  httpx did the node-to-node hop at
about a quarter of the speed on 770 KB segments (its per-chunk parsing and buffer copies
dominated a non-owner's CPU; docs/benchmarks.md).

Errors: :class:`storage.http1.ProtocolError` for a malformed or oversized head,
:class:`ConnectionClosed` when the stream ends first; OSError and trio's stream errors pass.
The client raises :class:`ClientError` for anything that is not a well-formed answer (refused,
reset, a malformed head, no Content-Length, a body that ends early, a head over 16 KiB, a body
over ``max_body``).  Timeouts are the caller's cancel scope.
"""

from __future__ import annotations

import select
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

import trio

from . import http1
from .http1 import HeadBuffer

RECV_SIZE = 64 * 1024


class ConnectionClosed(Exception):
    """The peer closed the connection before a whole head arrived."""


async def read_head(stream: trio.abc.Stream, buf: HeadBuffer, recv_size: int = RECV_SIZE) -> bytes:
    """The next head's bytes (without the blank line); what follows stays in ``buf``."""
    while (head := buf.next_head()) is None:
        data = await stream.receive_some(recv_size)
        if not data:
            raise ConnectionClosed("connection closed before the answer")
        buf.feed(data)
    return head


def _socket(stream: trio.abc.Stream) -> Any:
    return getattr(getattr(stream, "transport_stream", stream), "socket", None)


def quiet(stream: trio.abc.Stream) -> bool:
    """No bytes and no EOF waiting on an idle connection (else the server closed it)."""
    sock = _socket(stream)
    if sock is None or sock.fileno() < 0:
        return False
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    return not readable


def hang_up(stream: trio.abc.Stream) -> None:
    """Close a connection at once, without a checkpoint (an idle one: nothing to say goodbye to)."""
    sock = _socket(stream)
    if sock is not None:
        sock.close()


async def close_quietly(stream: trio.abc.Stream) -> None:
    """Close, shielded, ignoring a connection that is already broken."""
    with trio.CancelScope(shield=True):
        try:
            await trio.aclose_forcefully(stream)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class ConnectionPool:
    """Idle kept-alive connections per address ("host:port" or any key); see the module doc."""

    def __init__(self, *, max_idle: int, max_age: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 is_quiet: Callable[[trio.abc.Stream], bool] = quiet) -> None:
        self.max_idle = max_idle
        self.max_age = max_age
        self.clock = clock
        self._is_quiet = is_quiet
        # Invariant: at most max_idle entries per address; each (time given back, stream)
        self._idle: dict[str, list[tuple[float, trio.abc.Stream]]] = defaultdict(list)

    def idle(self, addr: str) -> list[tuple[float, trio.abc.Stream]]:
        """The idle connections of ``addr``, oldest first (the live list)."""
        return self._idle[addr]

    def take(self, addr: str) -> trio.abc.Stream | None:
        """The most recently used idle connection of ``addr`` that is still usable, or None.
        Unusable ones met on the way are closed."""
        now = self.clock()
        idle = self._idle[addr]
        while idle:
            since, stream = idle.pop()
            if (self.max_age is None or now - since < self.max_age) and self._is_quiet(stream):
                return stream
            hang_up(stream)
        return None

    async def give_back(self, addr: str, stream: trio.abc.Stream, *, reusable: bool = True) -> None:
        """Keep ``stream`` for the next request to ``addr``, or close it (not reusable, or full)."""
        idle = self._idle[addr]
        if reusable and len(idle) < self.max_idle:
            idle.append((self.clock(), stream))
        else:
            await close_quietly(stream)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                await close_quietly(idle.pop()[1])
        self._idle.clear()


class ClientError(Exception):
    """An answer could not be read (refused, reset, malformed, too large, cut short)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Http1Client:
    """GET or POST whole, Content-Length-framed answers over kept-alive connections; see the module doc."""

    def __init__(self, *, max_idle: int = 64, max_body: int = 256 << 20) -> None:
        self._pool = ConnectionPool(max_idle=max_idle)
        self._max_body = max_body

    async def get(self, addr: str, path: str, headers: dict[str, str]) -> Answer:
        """GET ``path`` from ``addr`` ("host:port"); raises ClientError."""
        return await self.request(addr, "GET", path, headers)

    async def post(self, addr: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """POST a small ``body`` to ``addr``; raises ClientError."""
        return await self.request(addr, "POST", path, headers, body)

    async def request(self, addr: str, method: str, path: str, headers: dict[str, str],
                      body: bytes | None = None) -> Answer:
        host, _, port = addr.rpartition(":")
        fields = [("Host", addr)] + list(headers.items())
        if body is not None:
            fields.append(("Content-Length", str(len(body))))
        request = http1.encode_request_head(method, path, fields) + (body or b"")
        stream = self._pool.take(addr)
        fresh = stream is None
        try:
            if stream is None:
                stream = await trio.open_tcp_stream(host, int(port))
            try:
                answer, reusable = await self._exchange(stream, request)
            except ClientError:
                if fresh:
                    raise
                # a kept connection the owner closed meanwhile: once more on a new one
                await close_quietly(stream)
                stream = await trio.open_tcp_stream(host, int(port))
                answer, reusable = await self._exchange(stream, request)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            if stream is not None:
                await close_quietly(stream)
            raise ClientError(f"{type(e).__name__}: {e}") from None
        except BaseException:  # ClientError, cancellation (the caller's timeout): the connection is spent
            if stream is not None:
                await close_quietly(stream)
            raise
        await self._pool.give_back(addr, stream, reusable=reusable)
        return answer

    async def _exchange(self, stream: trio.SocketStream, request: bytes) -> tuple[Answer, bool]:
        await stream.send_all(request)
        buf = http1.HeadBuffer()
        try:
            raw = await read_head(stream, buf, RECV_SIZE)
        except http1.HeadTooLarge:
            raise ClientError("response head over 16 KiB") from None
        except http1.ProtocolError as e:
            raise ClientError(str(e)) from None
        except ConnectionClosed as e:
            raise ClientError(str(e)) from None
        try:
            parsed = http1.parse_response_head(raw)
        except http1.ProtocolError as e:
            raise ClientError(str(e)) from None
        status, fields = parsed.status, parsed.headers
        try:
            length = http1.content_length(fields)
        except http1.ProtocolError:
            length = None
        if length is None:
            raise ClientError("answer without a Content-Length")
        if not 0 <= length <= self._max_body:
            raise ClientError(f"answer of {length} bytes")
        body = bytearray(length)
        view = memoryview(body)
        got = buf.take(length)
        view[:len(got)] = got
        n = len(got)
        sock = stream.socket
        while n < length:
            k = await sock.recv_into(view[n:], min(length - n, 1 << 20))
            if k == 0:
                raise ClientError(f"body ended after {n} of {length} bytes")
            n += k
        reusable = len(buf) == 0 and "close" not in fields.get("connection", "").lower()
        return Answer(status, fields, bytes(body)), reusable

    async def aclose(self) -> None:
        await self._pool.aclose()
