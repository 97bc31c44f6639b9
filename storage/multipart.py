"""Streaming multipart upload with bounded memory.

Feed pieces of any size with :meth:`StreamingUpload.write`; they go to storage through part
writers (``ObjectStore.part_writer``, :mod:`storage.parts`), never joined or copied here:

- with the object's size known (``total``), each part is opened at its first byte (``part_size``
  bytes each, the last one the rest), so storage receives a part while its bytes arrive (on S3 a
  raw UploadPart stream); each open part has its own task, fed through a channel, so a part whose
  answer is slow does not stop the next one from being fed;
- without it, a part is opened once ``part_size`` bytes are buffered (the last one at
  :meth:`~StreamingUpload.complete`).

At most ``parts_in_flight`` parts are open at once besides the object's last one, and a part's
slot is freed only once its ETag came and its bytes were hashed, so memory stays below
``(parts_in_flight + 1) * part_size`` whatever the object's size.  The sha256 of the whole object
is computed on a worker thread, a part's pieces at a time, in order.  The object becomes visible
only at :meth:`~StreamingUpload.complete`; on an error or :meth:`~StreamingUpload.abort` every
open writer is aborted and the multipart upload with it (shielded).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field

import trio

from .errors import StorageError
from .parts import FedPart, Piece, hash_pieces
from .store import ObjectStore, Part

MAX_PARTS = 10_000
MIN_PART = 5 * 1024 * 1024


def part_size_for(total: int | None, preferred: int) -> int:
    """The part size to use: ``preferred`` unless the object would need more than 10,000 parts."""
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


@dataclass
class OpenPart(FedPart):
    """A part of the object (:class:`storage.parts.FedPart`); its slot is released once it is
    answered *and* hashed."""
    hashed: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)


class StreamingUpload:
    def __init__(self, store: ObjectStore, key: str, *, part_size: int, parts_in_flight: int = 2,
                 content_type: str | None = None, total: int | None = None) -> None:
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
        self._buf: deque[Piece] = deque()  # received bytes not yet in a part
        self._buf_size = 0
        self._assigned = 0  # bytes handed to parts
        self._parts: dict[int, Part] = {}
        self._open: dict[int, OpenPart] = {}  # opened, not answered yet
        self._current: OpenPart | None = None  # the part being fed
        self._next = 1
        self._slots = trio.Semaphore(parts_in_flight)
        self._hash_send, self._hash_recv = trio.open_memory_channel[OpenPart](math.inf)
        self._nursery: trio.Nursery | None = None
        self._error: BaseException | None = None
        self._ended = False

    async def __aenter__(self) -> "StreamingUpload":
        if self.total != 0:  # an empty object is a plain put at complete()
            self.upload_id = await self.store.create_multipart(self.key, content_type=self.content_type)
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        self._nursery.start_soon(self._hash_loop)
        return self

    async def __aexit__(self, etype, exc, tb) -> bool:
        # The caller's own exception propagates as itself (not wrapped in an ExceptionGroup);
        # a failed part upload surfaces as that StorageError.
        assert self._nursery is not None
        if etype is not None and not isinstance(exc, trio.Cancelled):
            self._nursery.cancel_scope.cancel()
            etype = exc = tb = None
        elif etype is None and not self._ended:  # left without complete(): nothing is kept
            self._nursery.cancel_scope.cancel()
        self._hash_send.close()
        try:
            await self._cm.__aexit__(etype, exc, tb)
        except BaseExceptionGroup as eg:
            leaves = list(_leaves(eg))
            if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
                raise leaves[0] from None
            raise
        finally:
            await self.abort()
        return False

    async def write(self, data: Piece) -> None:
        """Append bytes (kept by reference until their part is answered); waits while too many
        parts are in flight (backpressure)."""
        if self._error is not None:
            raise self._error
        if self._ended:
            raise StorageError("write after complete")
        if self.total is not None and self.size + len(data) > self.total:
            raise StorageError(f"{self.key}: {self.size + len(data)} bytes is more than the "
                               f"announced {self.total}")
        if not data:
            return
        self.size += len(data)
        self._buf.append(data)
        self._buf_size += len(data)
        await self._feed()

    async def _feed(self) -> None:
        """Hand the buffered bytes to parts, opening parts whose size is known now."""
        while self._buf_size:
            part = self._current
            if part is None:
                size = next_part_size(total=self.total, assigned=self._assigned, buffered=self._buf_size,
                                      part_size=self.part_size, ended=self._ended)
                if not size:
                    return
                part = await self._open_part(size)
            piece = self._buf.popleft()
            if len(piece) > part.left:
                rest = memoryview(piece)[part.left:]
                piece = memoryview(piece)[:part.left]
                self._buf.appendleft(rest)
            self._buf_size -= len(piece)
            self._assigned += len(piece)
            part.add(piece)
            if not part.left:
                self._close_part()

    async def _open_part(self, size: int) -> OpenPart:
        num = self._next
        if num > MAX_PARTS:
            raise StorageError("object needs more than 10,000 parts")
        last = (self._assigned + size == self.total) if self.total is not None else self._ended
        slot = None if last else self._slots  # the object's last part goes at once
        if slot is not None:
            await slot.acquire()
        self._next += 1
        assert self.upload_id is not None and self._nursery is not None
        writer = self.store.part_writer(self.key, self.upload_id, num, size)
        part = self._open[num] = self._current = OpenPart(num, writer, slot)
        self._nursery.start_soon(self._send_part, part)
        return part

    def _close_part(self) -> None:
        """The part being fed got its last byte: its task sends the rest and awaits the answer."""
        part, self._current = self._current, None
        assert part is not None
        part.close()
        self._hash_send.send_nowait(part)

    async def _send_part(self, part: OpenPart) -> None:
        try:
            etag = await part.pump()
            await part.hashed.wait()
            self._parts[part.num] = Part(part.num, etag, part.writer.size)
        except BaseException as e:
            if not isinstance(e, trio.Cancelled) and self._error is None:
                self._error = e
            with trio.CancelScope(shield=True):
                await part.writer.abort()
            raise
        finally:
            self._open.pop(part.num, None)
            part.done.set()
            if part.slot is not None:
                part.slot.release()

    async def _hash_loop(self) -> None:
        """sha256 of the object in order, a part at a time on a worker thread (hashlib releases the
        GIL for big buffers), while the event loop receives and uploads."""
        async with self._hash_recv:
            async for part in self._hash_recv:
                await trio.to_thread.run_sync(hash_pieces, self.sha256, part.pieces)
                part.hashed.set()

    async def complete(self, *, if_none_match: bool = False) -> str:
        """Send the last part, wait for every part, and make the object visible."""
        if self._error is not None:
            raise self._error
        if self.total is not None and self.size != self.total:
            raise StorageError(f"{self.key}: ended after {self.size} of {self.total} bytes")
        self._ended = True
        if self.size == 0:  # S3 wants parts; an empty object is a plain put
            await self.abort()
            self._hash_send.close()
            return await self.store.put(self.key, b"", if_none_match=if_none_match,
                                        content_type=self.content_type)
        await self._feed()  # without total: the buffered rest is the last part
        assert self._current is None and not self._buf_size
        self._hash_send.close()
        for part in list(self._open.values()):
            await part.done.wait()
        if self._error is not None:
            raise self._error
        assert self.upload_id is not None
        parts = [self._parts[n] for n in sorted(self._parts)]
        etag = await self.store.complete_multipart(self.key, self.upload_id, parts,
                                                   if_none_match=if_none_match)
        self.upload_id = None
        return etag

    async def abort(self) -> None:
        """Abort every open part's writer and the multipart upload (shielded; idempotent)."""
        with trio.CancelScope(shield=True):
            for part in list(self._open.values()):
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
