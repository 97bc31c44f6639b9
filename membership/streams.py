"""Bounded gossip TCP: the admission gate for inbound connections and frame I/O over trio streams.

Inbound connections hold a slot of ``StreamGate`` (``max_streams`` slots) from accept to close:

* A connection that has not yet sent a valid header is *pending*; one whose header passed
  ``frames.open_header`` is *authenticated* (only key holders get there).
* A new connection finding every slot taken evicts the oldest pending one if that one has
  been pending for ``PENDING_GRACE`` seconds (it is closed at once, counted
  ``stream_evicted``); otherwise the new connection itself is closed at once
  (``stream_refused``).  So idle or trickling connections cannot keep a genuine peer out:
  they age past the grace and give way, and a newcomer, once in, has the grace to send its
  header (a genuine peer sends it with its first segment) before anyone can push it out.
* Deadlines: ``header_timeout`` for the header, ``stream_timeout`` for the whole exchange.

Memory: at most ``max_streams`` connections are held (the rest wait in the kernel's accept
queue or are closed), each buffers at most the 39-byte header before it is authenticated and
at most ``limit`` bytes after, so inbound bodies take at most ``max_streams * limit`` bytes.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Callable

import trio

from .frames import HEADER_SIZE, open_header, seal_header
from .replay import ReplayGuard

ADMITTED, EVICTED_OLDEST, REFUSED = "admitted", "evicted_oldest", "refused"
PENDING_GRACE = 0.25  # seconds a pending connection is safe from eviction (>> a LAN round trip)


class FrameError(Exception):
    """The peer closed mid-frame (or sent nothing)."""


class StreamGate:
    """At most ``limit`` inbound connections at once (pure: no trio; ``now`` is passed in).

    Invariant: ``pending + authenticated <= limit``; pending tokens are kept oldest first.
    """

    def __init__(self, limit: int, grace: float = PENDING_GRACE) -> None:
        self.limit = limit
        self.grace = grace
        # token -> (entered at, evict callback), oldest first
        self._pending: OrderedDict[int, tuple[float, Callable[[], None]]] = OrderedDict()
        self._authenticated: set[int] = set()
        self._tokens = itertools.count(1)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def authenticated(self) -> int:
        return len(self._authenticated)

    def enter(self, evict: Callable[[], None], now: float) -> tuple[str, int | None]:
        """Admit a new connection: ``(ADMITTED | EVICTED_OLDEST, token)`` or ``(REFUSED, None)``.
        ``evict`` is called if this connection is later pushed out while still pending."""
        outcome = ADMITTED
        if len(self._pending) + len(self._authenticated) >= self.limit:
            oldest = next(iter(self._pending.values()), None)
            if oldest is None or now - oldest[0] < self.grace:
                return REFUSED, None
            self._pending.popitem(last=False)
            oldest[1]()
            outcome = EVICTED_OLDEST
        token = next(self._tokens)
        self._pending[token] = (now, evict)
        return outcome, token

    def authenticate(self, token: int) -> bool:
        """Move ``token`` from pending to authenticated; False if it was evicted meanwhile."""
        if self._pending.pop(token, None) is None:
            return False
        self._authenticated.add(token)
        return True

    def leave(self, token: int) -> None:
        self._pending.pop(token, None)
        self._authenticated.discard(token)


async def receive_exactly(stream: trio.abc.Stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(min(n - len(buf), 65536))
        if not chunk:
            raise FrameError("stream closed mid-frame")
        buf += chunk
    return bytes(buf)


async def receive_header(stream: trio.abc.Stream, key: bytes, *, limit: int, guard: ReplayGuard,
                         now: Callable[[], float]) -> int:
    """Read and check a frame header; the body's length, or ``FrameRefused`` / ``FrameError``."""
    header = await receive_exactly(stream, HEADER_SIZE)
    return open_header(key, header, limit=limit, guard=guard, now=now())


async def receive_frame(stream: trio.abc.Stream, key: bytes, *, limit: int, guard: ReplayGuard,
                        now: Callable[[], float]) -> bytes:
    """Header, then body (the client side, reading a reply)."""
    length = await receive_header(stream, key, limit=limit, guard=guard, now=now)
    return await receive_exactly(stream, length)


async def send_frame(stream: trio.abc.Stream, key: bytes, packet: bytes, sent_at: float) -> None:
    await stream.send_all(seal_header(key, len(packet), sent_at) + packet)


def peer_name(stream: trio.SocketStream) -> str:
    """``host:port`` of the other end, for logs ("?" when the socket is already gone)."""
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except (OSError, AttributeError):
        return "?"
