"""One connection's handling can never take the node down: serialised sends and a guard.

hypercorn's trio ``TCPServer`` sends answers under its own lock, but closes a connection with
``send_eof()`` outside that lock, and trio's ``SocketStream.send_eof`` holds the stream's
"one sender at a time" detector across a checkpoint.  So when h11 refuses a request while the
app is still answering it (a chunked POST whose chunk size is 40 hex digits), the app's
``send_all`` can meet the close's ``send_eof`` and raise ``trio.BusyResourceError``; hypercorn
catches only ``BrokenResourceError``/``ClosedResourceError`` there, the error left the
connection's task group and then ``trio.run``, and the node process exited.

Two fixes, both applied to every plain or TLS connection by node.http.patches.serving, with the
fast lane on or off:

- :class:`SerialStream`: every send (``send_all``, ``send_eof``,
  ``wait_send_all_might_not_block``) of one connection takes one lock, so two tasks never send
  at once; a send after the EOF gets ``ClosedResourceError``, which hypercorn handles.
- :func:`guarded`: an exception out of one connection's handling is logged
  (``connection_error``) and closes that connection only; it never reaches the listeners'
  nursery.  Cancellation (``BaseException``) still propagates: shutdown stays shutdown.
"""

from __future__ import annotations

import traceback
from typing import Any, Awaitable, Callable

import trio

from node import log


class SerialStream:
    """``stream`` with its sends serialised by one lock; everything else is the stream's own
    (hypercorn tells TLS from plain TCP by ``do_handshake`` being there or not)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._send_lock = trio.Lock()

    def __getattr__(self, name: str) -> Any:  # socket, do_handshake, transport_stream, ...
        return getattr(self._stream, name)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes) -> None:
        async with self._send_lock:
            await self._stream.send_all(data)

    async def send_eof(self) -> None:
        async with self._send_lock:
            await self._stream.send_eof()

    async def wait_send_all_might_not_block(self) -> None:
        async with self._send_lock:
            await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


Server = Callable[..., Awaitable[None]]


def guarded(server: Server) -> Server:
    """hypercorn's ``TCPServer(app, config, context, state, stream)`` on a :class:`SerialStream`,
    with any exception of that connection logged and ending that connection only."""

    async def connection(app: Any, config: Any, context: Any, state: Any, stream: Any) -> None:
        try:
            await server(app, config, context, state, SerialStream(stream))
        except Exception as e:  # an ExceptionGroup of Exceptions too; Cancelled is a BaseException
            log.error("connection_error", error=f"{type(e).__name__}: {e}",
                      trace=traceback.format_exc(limit=8))
            with trio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except Exception:  # already broken: nothing more to close
                    pass

    connection.wrapped = server  # type: ignore[attr-defined]
    return connection
