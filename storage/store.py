"""What an object store is, and what is built on that interface alone, for any store.

- the interface (:class:`ObjectStore`) and the part writer every store hands out
  (:class:`PartWriter`), with S3's limits on parts;
- the request timing seam (:data:`Observer`, :func:`timed`);
- the gate that fails calls fast while storage is cut (:class:`StorageGate`,
  :class:`GatedStore`).

The JSON documents changed by compare-and-swap over this interface are :mod:`storage.cas`'s.

The interface
-------------

Two backends: :class:`storage.s3.S3Store` (any S3-compatible server, through
aioboto3) and :class:`storage.memory.MemoryStore` (an in-memory twin for unit
tests, with the same conditional-write semantics).

Parts
-----

One multipart part sent while its bytes are still arriving, and S3's limits on parts.

``MIN_PART`` and ``MAX_PARTS`` are S3's: every part but the last is at least 5 MiB, and an upload
has at most 10,000 parts (numbers 1..10,000).  They are defined here and nowhere else.

A :class:`PartWriter` is opened with the part's exact size, fed its bytes in order with
:meth:`PartWriter.send`, and ended with :meth:`PartWriter.finish`, which returns the part's ETag.
Feeding and finishing may happen in different tasks (a PATCH feeds the next part while the last
one's answer is awaited).  The writer keeps references to the bytes it was given until it ends:
a failed stream is sent again as one ``upload_part`` (with the store's own retries), and a caller
cut off mid-part can take the bytes back (:attr:`PartWriter.chunks`) to keep them elsewhere.
Memory per writer is therefore the part's size, as for a buffered part.

Two kinds: :class:`storage.s3.RawPartWriter` (S3's UploadPart streamed over a raw connection)
and

- :class:`BufferedPartWriter`: collects the bytes and calls ``store.upload_part`` at the end.
  Every store has it (``ObjectStore.part_writer``); the in-memory store uses it in unit tests.

Timing
------

How long storage requests take, told to whoever asks: the observer seam of ``storage``.

``storage`` imports nothing of the node, so a process that measures (the node's
``node/metrics.py``) hands an :data:`Observer` to the store at construction
(``open_store(..., observe=...)``, ``S3Store(..., observe=...)``, ``RawS3(..., observe=...)``).
Every request then calls ``observe(operation, seconds, ok)`` exactly once, when its answer is
in or it failed (``ok`` False for any exception, cancellation included).  The default,
:func:`ignore`, does nothing.

Invariant: ``operation`` is always one of :data:`OPERATIONS`, a fixed set, so a metric labelled
by it has a bounded number of series.

What is timed:

=======================  ==========================================================================
``get``                  GetObject, the whole body read included (``get``, ``get_range``); for
                         ``iter_object`` (a download in chunks) only until the answer's head
``head`` ``delete``      HeadObject, DeleteObject
``put``                  an unconditional PutObject (raw or through aiobotocore)
``cas``                  a conditional PutObject (If-None-Match or If-Match: every record CAS)
``list``                 ListObjectsV2
``create_multipart``     CreateMultipartUpload
``upload_part``          a buffered UploadPart (the whole body sent and answered)
``upload_part_stream``   a streamed UploadPart (storage.s3.RawPartWriter): from its last byte sent to the
                         answer, so the client's pace is not in it
``complete_multipart``   CompleteMultipartUpload
``abort_multipart``      AbortMultipartUpload
``list_parts``           ListParts (one page)
``list_multipart``       ListMultipartUploads
``bucket``               HeadBucket, CreateBucket
=======================  ==========================================================================

The gate
--------

Fail fast while storage is known to be unreachable: a gate in front of an object store.

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

import abc
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator

import trio

from .errors import StorageError, StorageUnavailable


# ---- parts: S3's limits and the part writer ------------------------------------------------------

MIN_PART = 5 * 1024 * 1024  # S3's smallest part (but the last)
MAX_PARTS = 10_000  # S3's part numbers: 1..10,000

Piece = bytes | memoryview
# Told that a streamed part failed and was sent again: ``on_resend(what, why)``.
OnResend = Callable[[str, str], None]


def no_resend_report(what: str, why: str) -> None:
    """The default ``on_resend``: tell nobody."""


class PartWriter(abc.ABC):
    """Part ``number`` of a multipart upload, exactly ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.chunks: list[bytes | memoryview] = []

    @property
    def full(self) -> bool:
        return self.sent == self.size

    async def send(self, data: bytes | memoryview) -> None:
        """The next bytes of the part, in order; never more than the part has left."""
        if self.sent + len(data) > self.size:
            raise ValueError(f"{len(data)} bytes do not fit: {self.size - self.sent} left of the part")
        self.chunks.append(data)
        self.sent += len(data)
        await self._stream(data)

    async def _stream(self, data: bytes | memoryview) -> None:
        """Pass the bytes on as they come (the buffered writer keeps them for :meth:`finish`)."""

    @abc.abstractmethod
    async def finish(self) -> str:
        """After the last byte: the part's ETag.  Raises StorageError (NotFound: upload gone)."""

    async def abort(self) -> None:
        """Give up on the part (its bytes stay in :attr:`chunks`)."""


class BufferedPartWriter(PartWriter):
    def __init__(self, upload: Callable[[bytes], Awaitable[str]], size: int) -> None:
        super().__init__(size)
        self._upload = upload

    async def finish(self) -> str:
        if not self.full:
            raise ValueError(f"part ended at {self.sent} of {self.size} bytes")
        return await self._upload(joined(self.chunks))


def joined(chunks: list[Piece]) -> bytes:
    """The pieces as one ``bytes`` (one copy)."""
    return bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)


def hash_pieces(hasher: Any, pieces: Iterable[Piece]) -> None:
    """Feed ``pieces`` to ``hasher`` in order (run it on a worker thread: hashlib lets go of the
    GIL for big buffers)."""
    for piece in pieces:
        hasher.update(piece)


# ---- the interface -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: float = 0.0  # unix seconds


@dataclass(frozen=True)
class Part:
    number: int
    etag: str
    size: int = 0


@dataclass(frozen=True)
class MultipartInfo:
    key: str
    upload_id: str
    initiated: float  # unix seconds


class ObjectStore(abc.ABC):
    """Keys are strings; bodies are bytes; etags are opaque strings (with quotes, as S3 sends them)."""

    # ---- single objects ---------------------------------------------------------------
    @abc.abstractmethod
    async def get(self, key: str) -> tuple[bytes, str]:
        """Return (body, etag).  Raises NotFound."""

    @abc.abstractmethod
    async def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start..end`` inclusive.  Raises NotFound."""

    @abc.abstractmethod
    def iter_object(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream an object's bytes.  Raises NotFound on first iteration."""

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo:
        """Raises NotFound."""

    async def presign_get(self, key: str, expires: int = 3600) -> str | None:
        """A URL that GETs ``key`` (ranges included) without other credentials for ``expires``
        seconds, or None where the store has no URLs (the in-memory twin)."""
        return None

    @abc.abstractmethod
    async def put(self, key: str, body: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None, content_type: str | None = None) -> str:
        """Write an object and return its etag.

        ``if_none_match=True`` creates only if absent; ``if_match=etag`` replaces only that
        version.  Either raises PreconditionFailed when it loses.
        """

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete; deleting a missing key is not an error."""

    @abc.abstractmethod
    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int = 1000) -> list[ObjectInfo]:
        """Up to ``limit`` keys under ``prefix`` in key order, after ``start_after``."""

    async def list_all(self, prefix: str, *, max_keys: int = 100_000) -> list[ObjectInfo]:
        """Every key under a prefix, paging; bounded by ``max_keys``."""
        out: list[ObjectInfo] = []
        after: str | None = None
        while len(out) < max_keys:
            page = await self.list(prefix, start_after=after, limit=min(1000, max_keys - len(out)))
            out.extend(page)
            if len(page) < 1000 or not page:
                break
            after = page[-1].key
        return out

    async def delete_prefix(self, prefix: str, *, max_keys: int = 100_000) -> int:
        n = 0
        for info in await self.list_all(prefix, max_keys=max_keys):
            await self.delete(info.key)
            n += 1
        return n

    async def download_to(self, key: str, path: Path) -> int:
        """Stream an object into a local file; returns its size."""
        n = 0
        with open(path, "wb") as f:
            async for chunk in self.iter_object(key):
                f.write(chunk)
                n += len(chunk)
        return n

    # ---- multipart ------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_multipart(self, key: str, *, content_type: str | None = None) -> str:
        """Start a multipart upload; returns its upload id."""

    @abc.abstractmethod
    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        """Upload part ``number`` (1-based); returns its etag.  Raises NotFound for a gone upload."""

    def part_writer(self, key: str, upload_id: str, number: int, size: int, *,
                    on_resend: OnResend = no_resend_report) -> PartWriter:
        """Part ``number`` of exactly ``size`` bytes, sent as its bytes arrive.
        This default collects them and calls :meth:`upload_part` at the end (it never resends:
        ``on_resend`` is for writers that stream)."""
        return BufferedPartWriter(lambda body: self.upload_part(key, upload_id, number, body), size)

    @abc.abstractmethod
    async def complete_multipart(self, key: str, upload_id: str, parts: list[Part], *,
                                 if_none_match: bool = False) -> str:
        """Assemble the parts; the object becomes visible only now.  Returns the etag."""

    @abc.abstractmethod
    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort and free the parts; aborting a gone upload is not an error."""

    @abc.abstractmethod
    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """Parts uploaded so far.  Raises NotFound for a gone upload."""

    @abc.abstractmethod
    async def list_multipart_uploads(self, prefix: str, *, limit: int = 1000) -> list[MultipartInfo]:
        """Multipart uploads in progress under a prefix."""

    async def aclose(self) -> None:  # pragma: no cover - default no-op
        return None


# ---- timing --------------------------------------------------------------------------------------

OPERATIONS = ("get", "head", "put", "cas", "delete", "list", "create_multipart", "upload_part",
              "upload_part_stream", "complete_multipart", "abort_multipart", "list_parts",
              "list_multipart", "bucket")

Observer = Callable[[str, float, bool], None]  # (operation, seconds, ok)


def ignore(operation: str, seconds: float, ok: bool) -> None:
    """The default observer: nothing is measured."""


class timed:
    """``with timed(observe, "get"): ...`` calls ``observe("get", seconds, ok)`` once on leaving."""

    __slots__ = ("_observe", "_operation", "_t0")

    def __init__(self, observe: Observer, operation: str) -> None:
        self._observe = observe
        self._operation = operation
        self._t0 = 0.0

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        self._observe(self._operation, time.perf_counter() - self._t0, kind is None)
        return False


# ---- the gate ------------------------------------------------------------------------------------

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
