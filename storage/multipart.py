"""Streaming multipart upload with bounded memory.

Feed pieces of any size with :meth:`StreamingUpload.write`; they go to storage through a
:class:`PartFeeder` (below) (the same one a tus PATCH uses), never joined or copied here:

- with the object's size known (``total``), each part is opened at its first byte (``part_size``
  bytes each, the last one the rest), so storage receives a part while its bytes arrive (on S3 a
  raw UploadPart stream);
- without it, a part is opened once ``part_size`` bytes are buffered (the last one at
  :meth:`~StreamingUpload.complete`).

The part sizes are this module's (:func:`next_part_size`); the feeder keeps at most
``parts_in_flight`` parts open besides the object's last one, so memory stays below
``(parts_in_flight + 1) * part_size`` whatever the object's size, and computes the sha256 of the
whole object on a worker thread, a part at a time, in order.  The object becomes visible
only at :meth:`~StreamingUpload.complete`; on an error or :meth:`~StreamingUpload.abort` every
open writer is aborted and the multipart upload with it (shielded).

The part feeder: bytes into multipart parts that stream to storage as they arrive.  The one
implementation behind both upload paths: the one-shot :class:`StreamingUpload` above and a tus PATCH (``node.upload.tus_patch``).  The caller decides the part sizes and numbers (its
own rules); the :class:`PartFeeder` does the rest, the same way for both:

- a part is opened at its first byte (its size known), gets its own task (:meth:`FedPart.pump`)
  that passes each piece on to its :class:`~storage.store.PartWriter` as it comes, so a part whose
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

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import trio

from .errors import StorageError
from .store import hash_pieces, MAX_PARTS, MIN_PART, no_resend_report, OnResend, PartWriter, Piece
from .store import ObjectStore, Part


def part_size_for(total: int | None, preferred: int) -> int:
    """The part size to use: ``preferred`` (at least ``MIN_PART``) unless the object would need
    more than ``MAX_PARTS`` parts."""
    if total is None or total <= preferred * MAX_PARTS:
        return max(preferred, MIN_PART)
    return max(MIN_PART, math.ceil(total / MAX_PARTS / MIN_PART) * MIN_PART)


def next_part_size(*, total: int | None, assigned: int, buffered: int, part_size: int,
                   ended: bool) -> int:
    """The size of the next part to open now (0: none yet).  Pure.

    ``assigned`` bytes are already in parts, ``buffered`` received bytes are not.  With ``total``
    known, a part is opened at its first byte: ``part_size``, or what is left of the object.
    Without it, only a whole ``part_size`` buffered, or (``ended``) the rest."""
    if total is not None:
        return min(part_size, total - assigned) if buffered else 0
    if buffered >= part_size:
        return part_size
    return buffered if ended else 0


class StreamingUpload:
    def __init__(self, store: ObjectStore, key: str, *, part_size: int, parts_in_flight: int = 2,
                 content_type: str | None = None, total: int | None = None,
                 on_resend: OnResend = no_resend_report) -> None:
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0, not {total}")
        self.store = store
        self.key = key
        self.part_size = part_size
        self.content_type = content_type
        self.total = total
        self.upload_id: str | None = None
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._held = HeldBytes()  # received bytes not yet in a part
        self._assigned = 0  # bytes of the parts opened so far
        self._next = 1
        self._on_resend = on_resend
        self._parts = PartFeeder(self._open_writer, parts_in_flight=parts_in_flight, hasher=self.sha256)
        self._ended = False

    async def __aenter__(self) -> "StreamingUpload":
        if self.total != 0:  # an empty object is a plain put at complete()
            self.upload_id = await self.store.create_multipart(self.key, content_type=self.content_type)
        await self._parts.__aenter__()
        return self

    async def __aexit__(self, etype, exc, tb) -> bool:
        # The caller's own exception propagates as itself (not wrapped in an ExceptionGroup);
        # a failed part upload surfaces as that StorageError.
        own_error = etype is not None and not isinstance(exc, trio.Cancelled)
        if own_error or not self._ended:  # left without complete(): nothing is kept
            self._parts.cancel()
        swallowed = False
        try:
            if own_error:
                await self._parts.__aexit__(None, None, None)
            else:
                swallowed = bool(await self._parts.__aexit__(etype, exc, tb))
        except BaseExceptionGroup as eg:
            leaves = list(_leaves(eg))
            if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
                raise leaves[0] from None
            raise
        finally:
            await self.abort()
        if not own_error and (etype is None or swallowed) and self._parts.error is not None:
            raise self._parts.error
        return swallowed

    async def write(self, data: Piece) -> None:
        """Append bytes (kept by reference until their part is answered); waits while too many
        parts are in flight (backpressure)."""
        if self._parts.error is not None:
            raise self._parts.error
        if self._ended:
            raise StorageError("write after complete")
        if self.total is not None and self.size + len(data) > self.total:
            raise StorageError(f"{self.key}: {self.size + len(data)} bytes is more than the "
                               f"announced {self.total}")
        if not data:
            return
        self.size += len(data)
        rest = self._parts.feed(data)
        if rest is not None:
            self._held.add(rest)
        await self._open_parts()

    async def _open_parts(self) -> None:
        """Open the parts whose size is known now and hand them the held bytes."""
        while self._parts.current is None and self._held.size:
            size = next_part_size(total=self.total, assigned=self._assigned, buffered=self._held.size,
                                  part_size=self.part_size, ended=self._ended)
            if not size:
                return
            last = (self._assigned + size == self.total) if self.total is not None else self._ended
            await self._parts.open_part(size, self._held, last=last, next_number=self._take_number)
            self._assigned += size

    def _take_number(self) -> int:
        num = self._next
        if num > MAX_PARTS:
            raise StorageError(f"object needs more than {MAX_PARTS:,} parts")
        self._next += 1
        return num

    def _open_writer(self, number: int, size: int) -> PartWriter:
        assert self.upload_id is not None
        return self.store.part_writer(self.key, self.upload_id, number, size, on_resend=self._on_resend)

    async def complete(self, *, if_none_match: bool = False) -> str:
        """Send the last part, wait for every part, and make the object visible."""
        if self._parts.error is not None:
            raise self._parts.error
        if self.total is not None and self.size != self.total:
            raise StorageError(f"{self.key}: ended after {self.size} of {self.total} bytes")
        self._ended = True
        if self.size == 0:  # S3 wants parts; an empty object is a plain put
            await self.abort()
            return await self.store.put(self.key, b"", if_none_match=if_none_match,
                                        content_type=self.content_type)
        await self._open_parts()  # without total: the held rest is the last part
        assert self._parts.current is None and not self._held.size
        await self._parts.drain()
        if self._parts.error is not None:
            raise self._parts.error
        assert self.upload_id is not None
        parts = [self._parts.done[n] for n in sorted(self._parts.done)]
        etag = await self.store.complete_multipart(self.key, self.upload_id, parts,
                                                   if_none_match=if_none_match)
        self.upload_id = None
        return etag

    async def abort(self) -> None:
        """Abort every open part's writer and the multipart upload (shielded; idempotent)."""
        with trio.CancelScope(shield=True):
            for part in list(self._parts.open.values()):
                await part.writer.abort()
            if self.upload_id is None:
                return
            uid, self.upload_id = self.upload_id, None
            with trio.move_on_after(10):
                try:
                    await self.store.abort_multipart(self.key, uid)
                except StorageError:
                    pass  # garbage collection of stale multipart uploads will get it


def _leaves(eg: BaseExceptionGroup):
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e


# ---- the part feeder: what StreamingUpload and a tus PATCH hand their bytes to -------------------

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
