"""Backpressure for request bodies under quart-trio.

Quart's ASGI connection appends every received chunk to the request body
without limit, so a handler slower than its client lets memory grow with the
upload (measured: 835 MiB for a 500 MB upload).  Here the receive loop stops
pulling from hypercorn while more than ``limit`` bytes wait unread; hypercorn's
bounded queue then pushes back through TCP to the client.  ``limit`` is the app's
``body_buffer`` (set per app, from ``limits.body_buffer``), else :data:`DEFAULT_LIMIT`.

A handler may answer before it read the whole body (401, 409, 413 ...).  Clients
such as tuspy and httpx send the whole body before they read the answer, so the
rest of the body is then received and dropped (up to ``DRAIN_LIMIT`` bytes or
``DRAIN_SECONDS``), which keeps such clients from hanging and the connection
usable; past the bounds the connection is closed.

The quart-trio internals these classes rely on, and why, are listed in node.http.patches
(which also installs them on the app class).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generator

import trio
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import EventWrapper, TrioBody, TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge

DEFAULT_LIMIT = 1 << 20
DRAIN_LIMIT = 256 << 20  # unread request bytes we are willing to receive and drop after answering
DRAIN_SECONDS = 30.0


class BoundedBody(TrioBody):
    """Quart's body, bounded, and without copies: received chunks are queued as they came and
    handed out one by one (Quart joins them into one bytearray and copies it out again, two copies
    of every uploaded byte; docs/benchmarks.md)."""

    limit = DEFAULT_LIMIT  # bytes queued before the receive loop waits; per app, see the connection

    def __init__(self, expected_content_length, max_content_length) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._chunks: deque[bytes] = deque()
        self._size = 0  # bytes queued
        self._drained = EventWrapper()
        self._drained.set()
        self.received = 0
        self._discarding = False

    def append(self, data: bytes) -> None:
        self.received += len(data)
        if self._discarding or not data or self._must_raise is not None:
            return
        self._chunks.append(data)
        self._size += len(data)
        self._has_data.set()
        if self._max_content_length is not None and self.received > self._max_content_length:
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()
        if self._size > self.limit:
            self._drained.clear()

    def discard(self) -> None:
        """The handler is done with the body: drop what is buffered and whatever still comes."""
        self._discarding = True
        self.clear()
        self._drained.set()

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0

    @property
    def complete(self) -> bool:
        return self._complete.is_set()

    async def wait_complete(self) -> None:
        await self._complete.wait()

    async def __anext__(self) -> bytes:
        if self._must_raise is not None:
            raise self._must_raise
        if not self._complete.is_set():
            await self._has_data.wait()
        if not self._chunks:
            if self._must_raise is not None:
                raise self._must_raise
            raise StopAsyncIteration()
        data = self._chunks.popleft()
        self._size -= len(data)
        if not self._chunks:
            self._has_data.clear()
        if self._size <= self.limit:
            self._drained.set()
        return data

    def __await__(self) -> Generator[Any, None, bytes]:
        if self._must_raise is not None:
            raise self._must_raise
        yield from self._complete.wait().__await__()
        if self._must_raise is not None:
            raise self._must_raise
        return b"".join(self._chunks)

    def set_complete(self) -> None:
        super().set_complete()
        self._drained.set()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    @property
    def buffered(self) -> int:
        return self._size


class BoundedRequest(TrioRequest):
    body_class = BoundedBody


class BackpressureConnection(TrioASGIHTTPConnection):
    def _create_request_from_scope(self, send):  # type: ignore[no-untyped-def]
        request = super()._create_request_from_scope(send)
        limit = getattr(self.app, "body_buffer", None)
        if limit is not None and isinstance(request.body, BoundedBody):
            request.body.limit = limit  # this app's bound, before any byte is received
        return request

    async def handle_request(self, nursery, request, send) -> None:  # type: ignore[override]
        body = request.body
        response = await self.app.handle_request(request)
        if isinstance(body, BoundedBody) and not body.complete:
            body.discard()
            expected = request.content_length
            if expected is not None and expected - body.received > DRAIN_LIMIT:
                response.headers["Connection"] = "close"  # too much to drain: hang up after answering
        await self._send_response(_last_send_shielded(send), response)
        if isinstance(body, BoundedBody) and not body.complete and \
                response.headers.get("Connection", "").lower() != "close":
            with trio.move_on_after(DRAIN_SECONDS):
                await body.wait_complete()
        nursery.cancel_scope.cancel()

    async def handle_messages(self, nursery, request, receive) -> None:  # type: ignore[override]
        body = request.body
        while True:
            if isinstance(body, BoundedBody):
                await body.wait_drained()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                break
        nursery.cancel_scope.cancel()


def _last_send_shielded(send: Any) -> Any:
    """``send`` with its last message (the response's end) shielded from cancellation.

    hypercorn ends the stream inside that send, and when the request body is still arriving it
    closes the connection there too (``TCPServer._close``: ``send_eof``, ``aclose``), in the
    task that called ``send``.  The same end also puts ``http.disconnect`` in our receive queue,
    and :meth:`BackpressureConnection.handle_messages` answers that by cancelling this
    connection's nursery: a cancellation that lands inside hypercorn's close left the socket
    open with nobody reading it, and the client's next request on it hung (an early 401 under
    load: tests/unit/node/http/test_body_backpressure.py).  What the shield covers is bounded:
    the last body bytes (hypercorn shields its socket sends anyway), a half-close and a close."""

    async def shielded(message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.body" and not message.get("more_body", False):
            with trio.CancelScope(shield=True):
                await send(message)
        else:
            await send(message)

    return shielded
