"""The object-store interface every backend implements.

Two backends: :class:`storage.s3.S3Store` (any S3-compatible server, through
aioboto3) and :class:`storage.memory.MemoryStore` (an in-memory twin for unit
tests, with the same conditional-write semantics).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from .parts import BufferedPartWriter, OnResend, PartWriter, no_resend_report


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
        """Part ``number`` of exactly ``size`` bytes, sent as its bytes arrive (storage.parts).
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
