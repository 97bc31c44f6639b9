"""The one hop from a non-owner to the owner: a small HTTP/1.1 client with kept-alive connections.

``HopClient.get(addr, path, headers) -> HopAnswer`` fetches a whole body whose length the
answer names (``Content-Length``; the owner's internal endpoint always sends one), reading it
straight into one preallocated buffer; ``HopClient.post`` sends a small body the same way (the
eviction notice of a DELETE).  Heads are written and read with the project's one codec
(:mod:`storage.http1`); connections are kept per address in a
:class:`storage.connections.ConnectionPool` (at most ``max_idle`` idle each) and reused; a
connection that failed, timed out or was asked to close is dropped.  httpx did the same job at
about a quarter of the speed on 770 KB segments (its per-chunk parsing and buffer copies
dominated a non-owner's CPU; docs/benchmarks.md).

Errors: :class:`HopError` for anything that is not a well-formed answer (refused, reset, a
malformed head, no Content-Length, a body that ends early, a head over 16 KiB, a body over
``max_body``); the caller falls back to storage.  Timeouts are the caller's cancel scope.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from storage import http1
from storage.connections import ConnectionClosed, ConnectionPool, close_quietly, read_head

RECV_SIZE = 64 * 1024


class HopError(Exception):
    """The owner's answer could not be read."""


@dataclass(frozen=True)
class HopAnswer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def parse_response_head(raw: bytes) -> tuple[int, dict[str, str]]:
    """Status and fields (lower-case names) of a response head without its blank line
    (:func:`storage.http1.parse_response_head`, the same codec as for S3's answers).  Pure."""
    try:
        head = http1.parse_response_head(raw)
    except http1.ProtocolError as e:
        raise HopError(str(e)) from None
    return head.status, head.headers


class HopClient:
    def __init__(self, *, max_idle: int = 64, max_body: int = 256 << 20) -> None:
        self._pool = ConnectionPool(max_idle=max_idle)
        self._max_body = max_body

    async def get(self, addr: str, path: str, headers: dict[str, str]) -> HopAnswer:
        """GET ``path`` from ``addr`` ("host:port"); raises HopError."""
        return await self.request(addr, "GET", path, headers)

    async def post(self, addr: str, path: str, headers: dict[str, str], body: bytes) -> HopAnswer:
        """POST a small ``body`` to ``addr``; raises HopError."""
        return await self.request(addr, "POST", path, headers, body)

    async def request(self, addr: str, method: str, path: str, headers: dict[str, str],
                      body: bytes | None = None) -> HopAnswer:
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
            except HopError:
                if fresh:
                    raise
                # a kept connection the owner closed meanwhile: once more on a new one
                await close_quietly(stream)
                stream = await trio.open_tcp_stream(host, int(port))
                answer, reusable = await self._exchange(stream, request)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            if stream is not None:
                await close_quietly(stream)
            raise HopError(f"{type(e).__name__}: {e}") from None
        except BaseException:  # HopError, cancellation (the caller's timeout): the connection is spent
            if stream is not None:
                await close_quietly(stream)
            raise
        await self._pool.give_back(addr, stream, reusable=reusable)
        return answer

    async def _exchange(self, stream: trio.SocketStream, request: bytes) -> tuple[HopAnswer, bool]:
        await stream.send_all(request)
        buf = http1.HeadBuffer()
        try:
            raw = await read_head(stream, buf, RECV_SIZE)
        except http1.HeadTooLarge:
            raise HopError("response head over 16 KiB") from None
        except http1.ProtocolError as e:
            raise HopError(str(e)) from None
        except ConnectionClosed as e:
            raise HopError(str(e)) from None
        status, fields = parse_response_head(raw)
        try:
            length = http1.content_length(fields)
        except http1.ProtocolError:
            length = None
        if length is None:
            raise HopError("answer without a Content-Length")
        if not 0 <= length <= self._max_body:
            raise HopError(f"answer of {length} bytes")
        body = bytearray(length)
        view = memoryview(body)
        got = buf.take(length)
        view[:len(got)] = got
        n = len(got)
        sock = stream.socket
        while n < length:
            k = await sock.recv_into(view[n:], min(length - n, 1 << 20))
            if k == 0:
                raise HopError(f"body ended after {n} of {length} bytes")
            n += k
        reusable = len(buf) == 0 and "close" not in fields.get("connection", "").lower()
        return HopAnswer(status, fields, bytes(body)), reusable

    async def aclose(self) -> None:
        await self._pool.aclose()
