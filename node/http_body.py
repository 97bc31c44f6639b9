"""Backpressure for request bodies under quart-trio.

Quart's ASGI connection appends every received chunk to the request body
without limit, so a handler slower than its client lets memory grow with the
upload (measured: 835 MiB for a 500 MB upload).  Here the receive loop stops
pulling from hypercorn while more than ``limit`` bytes wait unread; hypercorn's
bounded queue then pushes back through TCP to the client.
"""

from __future__ import annotations

from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import EventWrapper, TrioBody, TrioRequest

DEFAULT_LIMIT = 1 << 20


class BoundedBody(TrioBody):
    limit = DEFAULT_LIMIT

    def __init__(self, expected_content_length, max_content_length) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._drained = EventWrapper()
        self._drained.set()
        self.received = 0

    def append(self, data: bytes) -> None:
        self.received += len(data)
        super().append(data)
        if len(self._data) > self.limit:
            self._drained.clear()

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
