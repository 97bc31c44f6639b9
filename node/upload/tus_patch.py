"""One PATCH in progress: its bytes, the parts they go into, and their sha1.

:class:`Patch` is the PATCH's state; :class:`Feed` hands its bytes to parts as they arrive.  With
Content-Length a part's size is known before its bytes are here (:func:`tus.planned_part`), so
the part is opened at its first byte (``ObjectStore.part_writer``) and its own task passes each
piece on to storage while the next part is already being fed; without it, a part is opened once
it is buffered whole (:func:`tus.cut_size`).  At most ``parts_in_flight`` parts are open at once,
except the PATCH's last.  Every byte received is in ``buf``, in an open part (``inflight``) or
in a done part, so a PATCH cut off by its client can keep it (tus_store, salvage).

The locking, the commit and the record's changes are :mod:`node.upload.tus_uploads`'s.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import trio

import storage

from node.records import layout

from node.upload import tus
from node.upload.tus import TusError


@dataclass
class Patch:
    """One PATCH in progress."""
    vid: str
    request: str
    offset: int  # Upload-Offset
    checksum: tuple[str, bytes] | None
    up: dict[str, Any] | None = None  # the upload state as locked; None until the lock is ours
    refusal: TusError | None = None  # the lock was refused
    body_length: int | None = None  # Content-Length, when the client sent one
    buf: tus.Received = field(default_factory=tus.Received)  # received, not cut into a part yet
    next_n: int = 1  # the next part number; this lock may use up to last_n
    last_n: int = tus.MAX_PARTS
    received: int = 0
    done: dict[int, storage.Part] = field(default_factory=dict)
    inflight: dict[int, "OpenPart"] = field(default_factory=dict)  # opened, not done
    backlog: int = 0  # received bytes not yet passed on to storage when the body ended
    current: "OpenPart | None" = None  # the part being fed, if any (the highest in flight)
    hasher: Any = field(default_factory=hashlib.sha1)
    error: BaseException | None = None
    salvageable: bool = True
    lock_lost: bool = False
    ms: dict[str, float] = field(default_factory=dict)  # time per step, logged with tus_patch

    @property
    def start(self) -> int:
        return self.offset

    def beyond_length(self) -> bool:
        """(Once locked.)  The body went past Upload-Length: 413, nothing of it is kept."""
        assert self.up is not None
        if self.start + self.received <= self.up["length"]:
            return False
        self.salvageable = False
        self.error = TusError(413, "beyond_upload_length", f"the body goes beyond Upload-Length "
                              f"({self.up['length']} bytes); nothing of this PATCH was kept")
        return True

    @property
    def all_received(self) -> bool:
        return self.received == self.body_length

    def cut_size(self, *, ended: bool) -> int:
        """Bytes to send as the next part now (0: none yet); see :func:`tus.cut_size`."""
        if ended:
            remaining: int | None = 0
        elif self.body_length is None:
            remaining = None
        else:
            remaining = max(0, self.body_length - self.received)
        final = self.start + self.received + (remaining or 0) == self.up["length"]
        return tus.cut_size(self.buf.size, remaining, part_size=self.up["part_size"], final=final)

    def take_number(self) -> int:
        """The next of this lock's part numbers (fencing: tus.take_lock)."""
        num, self.next_n = self.next_n, self.next_n + 1
        if num > self.last_n:  # cannot happen: the lock's numbers cover every part it may cut
            raise AssertionError(f"part {num} is beyond this lock's numbers (up to {self.last_n})")
        return num

    def cut(self, n: int) -> tuple[int, bytes, memoryview]:
        """The next part: its number, ``n`` received bytes joined, the body's among them."""
        num = self.take_number()
        data, body = self.buf.take(n)
        return num, data, body

    def planned_part(self) -> int:
        """(Content-Length known.)  The size of the next part, from its first byte; see
        :func:`tus.planned_part`."""
        assert self.up is not None and self.body_length is not None
        unassigned = self.buf.size + max(0, self.body_length - self.received)
        final = self.start + self.received + max(0, self.body_length - self.received) == self.up["length"]
        return tus.planned_part(unassigned, part_size=self.up["part_size"], final=final)

    def hash_rest(self) -> None:
        """sha1 over the body bytes still held (they become the tail)."""
        storage.hash_pieces(self.hasher, self.buf.body_rest())


@dataclass
class OpenPart(storage.FedPart):
    """A part of this PATCH opened before all its bytes are here (storage.FedPart), with what the
    sha1 and a salvage need to know of its bytes."""
    tail_bytes: int = 0  # leading bytes that came from the old tail (not the body's)
    body: list[memoryview] = field(default_factory=list)  # its body bytes, for the sha1

    def add(self, piece: bytes | memoryview, *, body: bool = True) -> None:
        super().add(piece)
        if body:
            self.body.append(memoryview(piece))


class Feed:
    """Feeds one PATCH's bytes into its parts (storage.parts writers) as they arrive."""

    def __init__(self, store: storage.ObjectStore, st: Patch, parts: trio.Nursery,
                 to_hash: trio.MemorySendChannel[list[memoryview]], slots: trio.Semaphore) -> None:
        self.store, self.st, self.parts, self.to_hash, self.slots = store, st, parts, to_hash, slots

    async def into_part(self, chunk: bytes) -> bytes | memoryview | None:
        """Hand ``chunk`` to the part being fed; returns what did not fit (None: all of it)."""
        part = self.st.current
        if part is None:
            return chunk
        n = min(len(chunk), part.left)
        part.add(chunk if n == len(chunk) else memoryview(chunk)[:n])
        if part.full:
            await self._close_part()
        return None if n == len(chunk) else memoryview(chunk)[n:]

    async def open_parts(self, *, ended: bool) -> None:
        """Open the next parts whose size is known now and hand them what is buffered."""
        st = self.st
        while st.current is None and st.buf.size:
            if st.body_length is not None and not ended:
                size = st.planned_part()
            else:
                size = st.cut_size(ended=ended)
            if not size:
                return
            slot = None if st.all_received else self.slots  # the last part goes at once
            if slot is not None:
                await slot.acquire()
            num = st.take_number()
            writer = self.store.part_writer(layout.source_key(st.vid), st.up["upload_id"], num, size)
            pieces, body = st.buf.take_pieces(min(size, st.buf.size))
            part = OpenPart(num, writer, slot, tail_bytes=sum(map(len, pieces)) - sum(map(len, body)))
            st.inflight[num] = st.current = part
            self.parts.start_soon(self._send_part, part)
            for piece in pieces:
                part.add(piece, body=False)
            part.body = body
            if part.full:
                await self._close_part()

    async def _close_part(self) -> None:
        """The part being fed got its last byte: its task sends the rest and awaits the answer."""
        st = self.st
        part, st.current = st.current, None
        assert part is not None
        part.close()
        body, part.body = part.body, []
        if st.checksum is not None and body:
            await self.to_hash.send(body)

    async def _send_part(self, part: OpenPart) -> None:
        """A part's own task (:meth:`storage.FedPart.pump`); a failure ends the PATCH (``st.error``)."""
        st, scope = self.st, self.parts.cancel_scope
        try:
            etag = await part.pump()
            st.done[part.num] = storage.Part(part.num, etag, part.writer.size)
            del st.inflight[part.num]
        except storage.NotFound:
            st.error, st.salvageable = TusError(410, "gone", "the upload was terminated meanwhile"), False
            scope.cancel()
        except storage.StorageError as e:
            st.error = e
            scope.cancel()
        finally:
            if part.slot is not None:
                part.slot.release()

    @staticmethod
    async def hash_loop(st: Patch, queue: trio.MemoryReceiveChannel[list[memoryview]]) -> None:
        """sha1 of the body in order, a part at a time on a worker thread (hashlib releases the GIL
        for big buffers), while the event loop receives and uploads."""
        async with queue:
            async for pieces in queue:
                await trio.to_thread.run_sync(storage.hash_pieces, st.hasher, pieces)


def ms_since(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)
