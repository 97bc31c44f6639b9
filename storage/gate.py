"""Fail fast while storage is known to be unreachable: a gate in front of an object store.

A node cut from storage by a partition sees no error, only silence: each request would wait
its whole read timeout (60 s) and botocore's retries.  :class:`StorageGate` holds the verdict of
the node's storage probe (node/main.py); :class:`GatedStore` wraps an :class:`ObjectStore` so
that the callers who should answer quickly (the HTTP handlers: listings, uploads, playback
misses) learn it at once.

Invariants:

- while the gate is closed (the last probe failed), every call through a :class:`GatedStore`
  raises :class:`StorageUnavailable` at once, without touching the network;
- when the gate closes, every call in flight through it is cancelled and raises
  :class:`StorageUnavailable`; so no caller waits longer than the probe takes to notice
  (its interval plus its own bound);
- while the gate is open nothing changes: the wrapped store's own retries (botocore's, the raw
  path's reconnect) still ride out a short blip that the probe does not see.

The set of calls in flight holds one cancel scope per call running (bounded by them).
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Iterator

import trio

from .errors import StorageUnavailable
from .parts import OnResend, PartWriter, no_resend_report
from .store import MultipartInfo, ObjectInfo, ObjectStore, Part

__all__ = ["StorageGate", "GatedStore"]


class StorageGate:
    """Open (storage answers, or nobody has looked yet) or closed (the last probe failed)."""

    def __init__(self) -> None:
        self.open = True
        self.reason = ""
        self.refused = 0  # statistics: calls refused or cut short while closed
        self._in_flight: set[trio.CancelScope] = set()

    def mark(self, ok: bool, reason: str = "") -> None:
        """The probe's verdict.  Closing cancels every call in flight through the gate."""
        self.open = ok
        if not ok:
            self.reason = reason or "the storage probe failed"
            for scope in list(self._in_flight):
                scope.cancel()

    @contextlib.contextmanager
    def passage(self, what: str) -> Iterator[None]:
        """Run one storage call; raises StorageUnavailable when the gate is (or becomes) closed."""
        if not self.open:
            self.refused += 1
            raise StorageUnavailable(f"{what}: storage unreachable ({self.reason})")
        scope = trio.CancelScope()
        self._in_flight.add(scope)
        try:
            with scope:
                yield
        finally:
            self._in_flight.discard(scope)
        if scope.cancelled_caught:
            self.refused += 1
            raise StorageUnavailable(f"{what}: storage became unreachable ({self.reason})")


class _GatedPart(PartWriter):
    """A part writer whose sends and finish go through the gate; abort (local cleanup) does not."""

    def __init__(self, inner: PartWriter, gate: StorageGate, what: str) -> None:
        super().__init__(inner.size)
        self._inner = inner
        self._gate = gate
        self._what = what
        self.chunks = inner.chunks  # the same list: a resend after a failure finds every byte

    async def send(self, data: bytes | memoryview) -> None:
        with self._gate.passage(self._what):
            await self._inner.send(data)
        self.sent = self._inner.sent

    async def finish(self) -> str:
        with self._gate.passage(self._what):
            return await self._inner.finish()

    async def abort(self) -> None:
        await self._inner.abort()


class GatedStore(ObjectStore):
    """``inner``, refused at once while ``gate`` is closed (see the module's invariants)."""

    def __init__(self, inner: ObjectStore, gate: StorageGate) -> None:
        self.inner = inner
        self.gate = gate

    async def get(self, key: str) -> tuple[bytes, str]:
        with self.gate.passage(f"get {key}"):
            return await self.inner.get(key)

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        with self.gate.passage(f"get {key}"):
            return await self.inner.get_range(key, start, end)

    async def iter_object(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        chunks = self.inner.iter_object(key, chunk_size).__aiter__()
        try:
            while True:
                with self.gate.passage(f"read {key}"):  # never yield inside the cancel scope
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        return
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()

    async def head(self, key: str) -> ObjectInfo:
        with self.gate.passage(f"head {key}"):
            return await self.inner.head(key)

    async def put(self, key: str, body: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None, content_type: str | None = None) -> str:
        with self.gate.passage(f"put {key}"):
            return await self.inner.put(key, body, if_none_match=if_none_match, if_match=if_match,
                                        content_type=content_type)

    async def delete(self, key: str) -> None:
        with self.gate.passage(f"delete {key}"):
            await self.inner.delete(key)

    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int = 1000) -> list[ObjectInfo]:
        with self.gate.passage(f"list {prefix}"):
            return await self.inner.list(prefix, start_after=start_after, limit=limit)

    async def create_multipart(self, key: str, *, content_type: str | None = None) -> str:
        with self.gate.passage(f"create multipart {key}"):
            return await self.inner.create_multipart(key, content_type=content_type)

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        with self.gate.passage(f"upload part {number} of {key}"):
            return await self.inner.upload_part(key, upload_id, number, body)

    def part_writer(self, key: str, upload_id: str, number: int, size: int, *,
                    on_resend: OnResend = no_resend_report) -> PartWriter:
        inner = self.inner.part_writer(key, upload_id, number, size, on_resend=on_resend)
        return _GatedPart(inner, self.gate, f"upload part {number} of {key}")

    async def complete_multipart(self, key: str, upload_id: str, parts: list[Part], *,
                                 if_none_match: bool = False) -> str:
        with self.gate.passage(f"complete multipart {key}"):
            return await self.inner.complete_multipart(key, upload_id, parts,
                                                       if_none_match=if_none_match)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        with self.gate.passage(f"abort multipart {key}"):
            await self.inner.abort_multipart(key, upload_id)

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        with self.gate.passage(f"list parts {key}"):
            return await self.inner.list_parts(key, upload_id)

    async def list_multipart_uploads(self, prefix: str, *, limit: int = 1000) -> list[MultipartInfo]:
        with self.gate.passage(f"list multipart {prefix}"):
            return await self.inner.list_multipart_uploads(prefix, limit=limit)
