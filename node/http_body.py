"""Backpressure for request bodies under quart-trio.

Quart's ASGI connection appends every received chunk to the request body
without limit, so a handler slower than its client lets memory grow with the
upload (measured: 835 MiB for a 500 MB upload).  Here the receive loop stops
pulling from hypercorn while more than ``limit`` bytes wait unread; hypercorn's
bounded queue then pushes back through TCP to the client.

A handler may answer before it read the whole body (401, 409, 413 ...).  Clients
such as tuspy and httpx send the whole body before they read the answer, so the
rest of the body is then received and dropped (up to ``DRAIN_LIMIT`` bytes or
``DRAIN_SECONDS``), which keeps such clients from hanging and the connection
usable; past the bounds the connection is closed.
"""

from __future__ import annotations

import trio
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import EventWrapper, TrioBody, TrioRequest

DEFAULT_LIMIT = 1 << 20
DRAIN_LIMIT = 256 << 20  # unread request bytes we are willing to receive and drop after answering
DRAIN_SECONDS = 30.0


class BoundedBody(TrioBody):
    limit = DEFAULT_LIMIT

    def __init__(self, expected_content_length, max_content_length) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._drained = EventWrapper()
        self._drained.set()
        self.received = 0
        self._discarding = False

    def append(self, data: bytes) -> None:
        self.received += len(data)
        if self._discarding:
            return
        super().append(data)
        if len(self._data) > self.limit:
            self._drained.clear()

    def discard(self) -> None:
        """The handler is done with the body: drop what is buffered and whatever still comes."""
        self._discarding = True
        self._data.clear()
        self._drained.set()

    @property
    def complete(self) -> bool:
        return self._complete.is_set()

    async def wait_complete(self) -> None:
        await self._complete.wait()

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        finally:
            if len(self._data) <= self.limit:
                self._drained.set()

    def set_complete(self) -> None:
        super().set_complete()
        self._drained.set()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    @property
    def buffered(self) -> int:
        return len(self._data)


class BoundedRequest(TrioRequest):
    body_class = BoundedBody


class BackpressureConnection(TrioASGIHTTPConnection):
    async def handle_request(self, nursery, request, send) -> None:  # type: ignore[override]
        body = request.body
        response = await self.app.handle_request(request)
        if isinstance(body, BoundedBody) and not body.complete:
            body.discard()
            expected = request.content_length
            if expected is not None and expected - body.received > DRAIN_LIMIT:
                response.headers["Connection"] = "close"  # too much to drain: hang up after answering
        await self._send_response(send, response)
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
