"""Streaming multipart upload with bounded memory.

Feed pieces of any size with :meth:`StreamingUpload.write`; they go to storage through a
:class:`storage.feeder.PartFeeder` (the same one a tus PATCH uses), never joined or copied here:

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
"""

from __future__ import annotations

import hashlib
import math

import trio

from .errors import StorageError
from .feeder import HeldBytes, PartFeeder
from .parts import MAX_PARTS, MIN_PART, OnResend, PartWriter, Piece, no_resend_report
from .store import ObjectStore


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
