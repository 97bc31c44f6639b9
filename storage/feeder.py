"""Feeding bytes into multipart parts that stream to storage as they arrive.

The one implementation behind both upload paths: the one-shot :class:`storage.StreamingUpload`
and a tus PATCH (``node.upload.tus_patch``).  The caller decides the part sizes and numbers (its
own rules); the :class:`PartFeeder` does the rest, the same way for both:

- a part is opened at its first byte (its size known), gets its own task (:meth:`FedPart.pump`)
  that passes each piece on to its :class:`~storage.parts.PartWriter` as it comes, so a part whose
  connection is slow does not stop the next one from being fed;
- at most ``parts_in_flight`` parts are open at once, except the last part, which goes at once;
  a part's slot is freed only once its ETag came *and* its bytes were hashed, so memory stays
  below ``(parts_in_flight + 1) * part size``;
- the checksum (any hashlib object, optional) runs on a worker thread, a part at a time, in part
  order (hashlib lets go of the GIL for big buffers) while the event loop receives and uploads;
  the leading ``unhashed`` bytes of a part (a tus PATCH's old tail) are left out of it;
- bytes are kept by reference, never joined or copied: a part keeps its pieces until it is
  answered, so a part cut off (or failed) still has every byte it was given (:attr:`PartFeeder.open`).

A part that fails with a :class:`~storage.errors.StorageError` aborts its writer, is kept in
:attr:`PartFeeder.open`, and ends the feeding: :attr:`PartFeeder.error` is set and the feeder's
block is cancelled (the caller decides what the error means).  :class:`HeldBytes` holds what was
received but is not in a part yet.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import trio

from .errors import StorageError
from .parts import PartWriter, Piece, hash_pieces
from .store import Part


def skip_bytes(pieces: Iterable[Piece], n: int) -> Iterator[memoryview]:
    """Views of ``pieces`` without their first ``n`` bytes (empty views left out)."""
    for piece in pieces:
        view = memoryview(piece)[min(n, len(piece)):]
        n = max(0, n - len(piece))
        if len(view):
            yield view


class HeldBytes:
    """Received bytes not in a part yet, in order, as the pieces they came in.

    The first :attr:`unhashed` of them are not part of the checksum: a tus PATCH puts the upload's
    old tail in front of its body (:meth:`put_first_unhashed`).
    """

    def __init__(self) -> None:
        self.chunks: deque[Piece] = deque()
        self.size = 0
        self.unhashed = 0  # leading bytes not part of the checksum

    def add(self, piece: Piece) -> None:
        self.chunks.append(piece)
        self.size += len(piece)

    def put_first_unhashed(self, data: bytes) -> None:
        """Bytes that go in front and outside the checksum (a tus PATCH's old tail; it may be read
        after the first body chunks came)."""
        assert self.unhashed == 0
        self.chunks.appendleft(data)
        self.size += len(data)
        self.unhashed = len(data)

    def take(self, n: int) -> tuple[bytes, memoryview]:
        """The first ``n`` bytes, joined (one copy), and the view of the hashed ones among them.

        Bytes, not a bytearray: aiohttp copies a bytearray body twice on Python 3.11 (measured:
        1.3 vs 1.05 s of CPU per GiB uploaded)."""
        pieces, unhashed = self.take_pieces(n)
        data = bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)
        return data, memoryview(data)[unhashed:]

    def take_pieces(self, n: int) -> tuple[list[Piece], int]:
        """The first ``n`` bytes as the pieces they came in (no copy), and how many of their
        leading bytes are unhashed."""
        out: list[Piece] = []
        got = 0
        while got < n:
            chunk = self.chunks[0]
            if got + len(chunk) <= n:
                out.append(self.chunks.popleft())
            else:
                view = memoryview(chunk)
                out.append(view[:n - got])
                self.chunks[0] = view[n - got:]
            got += len(out[-1])
        self.size -= n
        unhashed = min(self.unhashed, n)
        self.unhashed -= unhashed
        return out, unhashed

    def put_back(self, pieces: list[Piece], unhashed: int) -> None:
        """Pieces taken before (a part that could not be finished) go back in front, in order;
        ``unhashed`` of their leading bytes are outside the checksum."""
        for piece in reversed(pieces):
            self.chunks.appendleft(piece)
            self.size += len(piece)
        self.unhashed += unhashed

    def hashed_rest(self) -> Iterator[memoryview]:
        """Views of the hashed bytes still held (for the checksum of what never goes into a part)."""
        return skip_bytes(self.chunks, self.unhashed)


@dataclass(eq=False)
class FedPart:
    """A part opened before all its bytes are here; :attr:`pieces` keeps every byte handed over
    (by reference) until the part is answered, at most the part's size."""

    number: int
    writer: PartWriter
    slot: trio.Semaphore | None  # the feeder's, released once the part is answered and hashed
    unhashed: int = 0  # leading bytes that are not part of the checksum
    pieces: list[Piece] = field(default_factory=list)
    filled: int = 0
    hashed: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)  # answered, failed or cut off
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)  # the part's own task

    def __post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Piece](math.inf)

    @property
    def left(self) -> int:
        return self.writer.size - self.filled

    @property
    def full(self) -> bool:
        return self.filled == self.writer.size

    def add(self, piece: Piece) -> None:
        self.pieces.append(piece)
        self.filled += len(piece)
        self._send.send_nowait(piece)  # bounded: a part takes at most its size

    def close(self) -> None:
        """Every byte of the part was handed over."""
        self._send.close()

    def hashed_pieces(self) -> Iterator[memoryview]:
        return skip_bytes(self.pieces, self.unhashed)

    async def pump(self) -> str:
        """Pass the pieces on as they come; after the last one, the part's ETag."""
        async with self._receive:
            async for piece in self._receive:
                await self.writer.send(piece)
        return await self.writer.finish()


class PartFeeder:
    """Feeds bytes into parts that stream to storage as they arrive (see the module docstring).

    ``open_writer(number, size)`` opens a part's writer (``ObjectStore.part_writer`` with the
    caller's key, upload id and ``on_resend``).  Use as ``async with PartFeeder(...) as feeder``:
    the block is the parts' nursery, and leaving it waits until every part is answered (a part left
    unfilled is cut off: its writer is aborted and its bytes stay in :attr:`open`).
    """

    def __init__(self, open_writer: Callable[[int, int], PartWriter], *, parts_in_flight: int,
                 hasher: Any | None = None) -> None:
        self._open_writer = open_writer
        self._slots = trio.Semaphore(max(1, parts_in_flight))
        self.hasher = hasher
        self.open: dict[int, FedPart] = {}  # opened, not answered: in flight, failed or cut off
        self.done: dict[int, Part] = {}  # answered
        self.current: FedPart | None = None  # the part being fed (the highest open one)
        self.error: StorageError | None = None  # the first part that failed
        self._hash_send, self._hash_recv = trio.open_memory_channel[FedPart](math.inf)
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> "PartFeeder":
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        if self.hasher is not None:
            self._nursery.start_soon(self._hash_loop)
        return self

    async def __aexit__(self, etype: Any, exc: Any, tb: Any) -> bool | None:
        if self.current is not None:  # nothing more will come: cut it off alone
            self.current.scope.cancel()
        self._hash_send.close()
        return await self._cm.__aexit__(etype, exc, tb)

    def cancel(self) -> None:
        """Stop every part (and the caller's code inside the block)."""
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    @property
    def backlog(self) -> int:
        """Bytes handed to open parts but not passed on to storage yet."""
        return sum(p.filled - p.writer.sent for p in self.open.values())

    def feed(self, piece: Piece) -> Piece | None:
        """Hand ``piece`` to the part being fed; returns what did not fit (None: all of it)."""
        part = self.current
        if part is None:
            return piece
        n = min(len(piece), part.left)
        part.add(piece if n == len(piece) else memoryview(piece)[:n])
        if part.full:
            self._close_current()
        return None if n == len(piece) else memoryview(piece)[n:]

    async def open_part(self, size: int, held: HeldBytes, *, last: bool,
                        next_number: Callable[[], int]) -> FedPart:
        """Open the next part, of ``size`` bytes, and hand it what ``held`` has of them.

        Waits for a slot unless it is the ``last`` part; its number is taken (``next_number()``)
        only once it has one."""
        assert self.current is None and self._nursery is not None
        slot = None if last else self._slots
        if slot is not None:
            await slot.acquire()
        try:
            number = next_number()
            writer = self._open_writer(number, size)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        pieces, unhashed = held.take_pieces(min(size, held.size))
        part = FedPart(number, writer, slot, unhashed=unhashed)
        self.open[number] = self.current = part
        self._nursery.start_soon(self._send, part)
        for piece in pieces:
            part.add(piece)
        if part.full:
            self._close_current()
        return part

    async def drain(self) -> None:
        """Wait until every open part is answered (or failed)."""
        for part in list(self.open.values()):
            await part.done.wait()

    def _close_current(self) -> None:
        """The part being fed got its last byte: its task sends the rest and awaits the answer."""
        part, self.current = self.current, None
        assert part is not None
        part.close()
        if self.hasher is None:
            part.hashed.set()
        else:
            self._hash_send.send_nowait(part)  # bounded: at most the open parts

    async def _send(self, part: FedPart) -> None:
        """A part's own task: its ETag, or the feeding's end (:attr:`error`)."""
        try:
            with part.scope:
                try:
                    etag = await part.pump()
                    await part.hashed.wait()
                except BaseException as e:
                    with trio.CancelScope(shield=True):
                        await part.writer.abort()
                    if not isinstance(e, StorageError):
                        raise  # cancelled (or a bug): as itself
                    if self.error is None:
                        self.error = e
                    self.cancel()
                else:
                    self.done[part.number] = Part(part.number, etag, part.writer.size)
                    del self.open[part.number]
        finally:
            part.done.set()
            if part.slot is not None:
                part.slot.release()

    async def _hash_loop(self) -> None:
        async with self._hash_recv:
            async for part in self._hash_recv:
                await trio.to_thread.run_sync(hash_pieces, self.hasher, list(part.hashed_pieces()))
                part.hashed.set()
