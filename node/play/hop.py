"""The one hop from a non-owner to the owner: a small HTTP/1.1 GET client with kept-alive connections.

``HopClient.get(addr, path, headers, timeout) -> HopAnswer`` fetches a whole body whose length the
answer names (``Content-Length``; the owner's internal endpoint always sends one), reading it
straight into one preallocated buffer.  Connections are kept per address (at most
``max_idle`` idle each) and reused; a connection that failed, timed out or was asked to close is
dropped.  httpx did the same job at about a quarter of the speed on 770 KB segments (its
per-chunk parsing and buffer copies dominated a non-owner's CPU; docs/benchmarks.md).

Errors: :class:`HopError` for anything that is not a well-formed answer (refused, reset, a
malformed head, no Content-Length, a body that ends early, a head over 16 KiB, a body over
``max_body``); the caller falls back to storage.  Timeouts are the caller's cancel scope.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import trio

import storage
from storage.raw import parse_head

MAX_HEAD = 16 * 1024
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
    (:func:`storage.raw.parse_head`, the same parser as for S3's answers).  Pure."""
    try:
        return parse_head(raw)
    except storage.StorageUnavailable as e:
        raise HopError(str(e)) from None


class HopClient:
    def __init__(self, *, max_idle: int = 64, max_body: int = 256 << 20) -> None:
        self._idle: dict[str, list[trio.SocketStream]] = defaultdict(list)
        self._max_idle = max_idle
        self._max_body = max_body

    async def get(self, addr: str, path: str, headers: dict[str, str]) -> HopAnswer:
        """GET ``path`` from ``addr`` ("host:port"); raises HopError."""
        host, _, port = addr.rpartition(":")
        stream = self._idle[addr].pop() if self._idle[addr] else None
        fresh = stream is None
        try:
            if stream is None:
                stream = await trio.open_tcp_stream(host, int(port))
            try:
                answer, reusable = await self._exchange(stream, addr, path, headers)
            except HopError:
                if fresh:
                    raise
                # a kept connection the owner closed meanwhile: once more on a new one
                await stream.aclose()
                stream = await trio.open_tcp_stream(host, int(port))
                answer, reusable = await self._exchange(stream, addr, path, headers)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            if stream is not None:
                await _close_quietly(stream)
            raise HopError(f"{type(e).__name__}: {e}") from None
        except BaseException:  # HopError, cancellation (the caller's timeout): the connection is spent
            if stream is not None:
                await _close_quietly(stream)
            raise
        if reusable and len(self._idle[addr]) < self._max_idle:
            self._idle[addr].append(stream)
        else:
            await _close_quietly(stream)
        return answer

    async def _exchange(self, stream: trio.SocketStream, addr: str, path: str,
                        headers: dict[str, str]) -> tuple[HopAnswer, bool]:
        lines = [f"GET {path} HTTP/1.1", f"Host: {addr}"] + [f"{k}: {v}" for k, v in headers.items()]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        buf = b""
        end = -1
        while end < 0:
            if len(buf) > MAX_HEAD:
                raise HopError("response head over 16 KiB")
            data = await stream.receive_some(RECV_SIZE)
            if not data:
                raise HopError("connection closed before the answer")
            buf += data
            end = buf.find(b"\r\n\r\n")
        status, fields = parse_response_head(buf[:end])
        try:
            length = int(fields["content-length"])
        except (KeyError, ValueError):
            raise HopError("answer without a Content-Length") from None
        if not 0 <= length <= self._max_body:
            raise HopError(f"answer of {length} bytes")
        body = bytearray(length)
        view = memoryview(body)
        got = buf[end + 4:end + 4 + length]
        view[:len(got)] = got
        n = len(got)
        sock = stream.socket
        while n < length:
            k = await sock.recv_into(view[n:], min(length - n, 1 << 20))
            if k == 0:
                raise HopError(f"body ended after {n} of {length} bytes")
            n += k
        reusable = len(buf) - end - 4 <= length and "close" not in fields.get("connection", "").lower()
        return HopAnswer(status, fields, bytes(body)), reusable

    async def aclose(self) -> None:
        for streams in self._idle.values():
            for s in streams:
                await _close_quietly(s)
        self._idle.clear()


async def _close_quietly(stream: trio.SocketStream) -> None:
    with trio.CancelScope(shield=True):
        try:
            await stream.aclose()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
