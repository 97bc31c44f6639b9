"""Streaming multipart upload with bounded memory.

Feed chunks of any size; whole parts of ``part_size`` bytes go to storage,
at most ``parts_in_flight`` at once, so memory stays below about
``(parts_in_flight + 1) * part_size`` whatever the object's size.  The object
becomes visible only at :meth:`StreamingUpload.complete`; :meth:`abort`
(shielded) frees every part.
"""

from __future__ import annotations

import hashlib
import math

import trio

from .errors import StorageError
from .store import ObjectStore, Part

MAX_PARTS = 10_000
MIN_PART = 5 * 1024 * 1024


def part_size_for(total: int | None, preferred: int) -> int:
    """The part size to use: ``preferred`` unless the object would need more than 10,000 parts."""
    if total is None or total <= preferred * MAX_PARTS:
        return max(preferred, MIN_PART)
    return max(MIN_PART, math.ceil(total / MAX_PARTS / MIN_PART) * MIN_PART)


class StreamingUpload:
    def __init__(self, store: ObjectStore, key: str, *, part_size: int, parts_in_flight: int = 2,
                 content_type: str | None = None) -> None:
        self.store = store
        self.key = key
        self.part_size = part_size
        self.content_type = content_type
        self.upload_id: str | None = None
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._pending: list[bytes] = []  # received bytes not yet in a part
        self._pending_size = 0
        self._parts: dict[int, Part] = {}
        self._next = 1
        self._in_flight = parts_in_flight
        self._slots = trio.Semaphore(parts_in_flight)
        self._nursery: trio.Nursery | None = None
        self._error: BaseException | None = None

    async def __aenter__(self) -> "StreamingUpload":
        self.upload_id = await self.store.create_multipart(self.key, content_type=self.content_type)
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        return self

    async def __aexit__(self, etype, exc, tb) -> bool:
        # The caller's own exception propagates as itself (not wrapped in an ExceptionGroup);
        # a failed part upload surfaces as that StorageError.
        assert self._nursery is not None
        if etype is not None and not isinstance(exc, trio.Cancelled):
            self._nursery.cancel_scope.cancel()
            etype = exc = tb = None
        try:
            await self._cm.__aexit__(etype, exc, tb)
        except BaseExceptionGroup as eg:
            leaves = list(_leaves(eg))
            if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
                raise leaves[0] from None
            raise
        finally:
            if self.upload_id is not None:
                await self.abort()
        return False

    async def write(self, data: bytes) -> None:
        """Append bytes; waits while too many parts are in flight (backpressure)."""
        if self._error is not None:
            raise self._error
        self.size += len(data)
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self.part_size:
            joined = b"".join(self._pending)  # one copy per part
            self._pending.clear()
            whole = len(joined) - len(joined) % self.part_size
            for i in range(0, whole, self.part_size):
                chunk = joined[i:i + self.part_size]
                # hashlib releases the GIL: hash on the other core while this one receives
                await trio.to_thread.run_sync(self.sha256.update, chunk)
                await self._send(chunk)
            rest = joined[whole:]
            self._pending_size = len(rest)
            if rest:
                self._pending.append(rest)

    async def _send(self, chunk: bytes) -> None:
        n = self._next
        self._next += 1
        if n > MAX_PARTS:
            raise StorageError("object needs more than 10,000 parts")
        await self._slots.acquire()
        assert self._nursery is not None
        self._nursery.start_soon(self._upload, n, chunk)

    async def _upload(self, n: int, chunk: bytes) -> None:
        try:
            assert self.upload_id is not None
            etag = await self.store.upload_part(self.key, self.upload_id, n, chunk)
            self._parts[n] = Part(n, etag, len(chunk))
        except BaseException as e:
            self._error = e
            raise
        finally:
            self._slots.release()

    async def complete(self, *, if_none_match: bool = False) -> str:
        """Flush the tail, wait for every part, and make the object visible."""
        if self.size == 0:  # S3 wants parts; an empty object is a plain put
            await self.abort()
            return await self.store.put(self.key, b"", if_none_match=if_none_match,
                                        content_type=self.content_type)
        if self._pending:  # the last part may be short
            chunk = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self.sha256.update(chunk)
            await self._send(chunk)
        # wait for the parts in flight: take every slot
        for _ in range(self._in_flight):
            await self._slots.acquire()
        for _ in range(self._in_flight):
            self._slots.release()
        if self._error is not None:
            raise self._error
        assert self.upload_id is not None
        parts = [self._parts[n] for n in sorted(self._parts)]
        etag = await self.store.complete_multipart(self.key, self.upload_id, parts,
                                                   if_none_match=if_none_match)
        self.upload_id = None
        return etag

    async def abort(self) -> None:
        if self.upload_id is None:
            return
        uid, self.upload_id = self.upload_id, None
        with trio.CancelScope(shield=True):
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
