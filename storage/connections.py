"""Kept-alive HTTP/1.1 connections, shared by every raw client path (raw S3 in storage.raw, the
hop between nodes in node.play.hop), and the one loop that reads a head off a stream.

:class:`ConnectionPool` keeps idle connections per address: at most ``max_idle`` each (a
connection given back beyond that is closed), none older than ``max_age`` seconds when that is
set, and none that has bytes or an EOF waiting (the server closed it, or said something we did
not ask for).  A connection that failed, or whose answer asked to close, is never given back:
callers close it (:func:`close_quietly`).  The clock is injected.

:func:`read_head` reads from a trio stream into a :class:`storage.http1.HeadBuffer` until one
head is complete (bounded by ``http1.MAX_HEAD``).

Errors: :class:`storage.http1.ProtocolError` for a malformed or oversized head,
:class:`ConnectionClosed` when the stream ends first; OSError and trio's stream errors pass.
"""

from __future__ import annotations

import select
import time
from collections import defaultdict
from typing import Any, Callable

import trio

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
