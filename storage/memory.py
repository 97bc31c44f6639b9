"""An in-memory object store with S3's conditional-write semantics, for unit tests.

Etags are md5 of the body (quoted) for plain puts, like S3.  A fault hook lets
tests make the next N calls raise :class:`StorageUnavailable`.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from typing import AsyncIterator

import trio

from .errors import NotFound, PreconditionFailed, StorageUnavailable
from .store import MultipartInfo, ObjectInfo, ObjectStore, Part


def _etag(body: bytes) -> str:
    return '"' + hashlib.md5(body).hexdigest() + '"'


class MemoryStore(ObjectStore):
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str, float]] = {}
        self.uploads: dict[str, tuple[str, dict[int, tuple[bytes, str]], float]] = {}
        self._ids = itertools.count(1)
        self.fail_next = 0  # make this many next calls raise StorageUnavailable
        self.calls: list[str] = []

    async def _op(self, name: str) -> None:
        self.calls.append(name)
        await trio.sleep(0)  # a checkpoint, as a real store would have
        if self.fail_next > 0:
            self.fail_next -= 1
            raise StorageUnavailable(f"{name}: injected fault")

    async def get(self, key: str) -> tuple[bytes, str]:
        await self._op("get")
        if key not in self.objects:
            raise NotFound(key)
        body, etag, _ = self.objects[key]
        return body, etag

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        body, _ = await self.get(key)
        return body[start:end + 1]

    async def iter_object(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        body, _ = await self.get(key)
        for i in range(0, len(body), chunk_size):
            yield body[i:i + chunk_size]

    async def head(self, key: str) -> ObjectInfo:
        await self._op("head")
        if key not in self.objects:
            raise NotFound(key)
        body, etag, t = self.objects[key]
        return ObjectInfo(key, len(body), etag, t)

    def _check(self, key: str, if_none_match: bool, if_match: str | None) -> None:
        if if_none_match and key in self.objects:
            raise PreconditionFailed(key)
        if if_match is not None and (key not in self.objects or self.objects[key][1] != if_match):
            raise PreconditionFailed(key)

    async def put(self, key: str, body: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None, content_type: str | None = None) -> str:
        await self._op("put")
        self._check(key, if_none_match, if_match)
        etag = _etag(bytes(body))
        self.objects[key] = (bytes(body), etag, time.time())
        return etag

    async def delete(self, key: str) -> None:
        await self._op("delete")
        self.objects.pop(key, None)

    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int = 1000) -> list[ObjectInfo]:
        await self._op("list")
        keys = sorted(k for k in self.objects if k.startswith(prefix) and (not start_after or k > start_after))
        return [ObjectInfo(k, len(self.objects[k][0]), self.objects[k][1], self.objects[k][2])
                for k in keys[:limit]]

    async def create_multipart(self, key: str, *, content_type: str | None = None) -> str:
        await self._op("create_multipart")
        uid = f"mp{next(self._ids)}"
        self.uploads[uid] = (key, {}, time.time())
        return uid

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        await self._op("upload_part")
        if upload_id not in self.uploads:
            raise NotFound(upload_id)
        etag = _etag(bytes(body))
        self.uploads[upload_id][1][number] = (bytes(body), etag)
        return etag

    async def complete_multipart(self, key: str, upload_id: str, parts: list[Part], *,
                                 if_none_match: bool = False) -> str:
        await self._op("complete_multipart")
        if upload_id not in self.uploads:
            raise NotFound(upload_id)
        self._check(key, if_none_match, None)
        stored = self.uploads[upload_id][1]
        for p in parts:
            if p.number not in stored or stored[p.number][1] != p.etag:
                raise PreconditionFailed(f"part {p.number} does not match")
        body = b"".join(stored[p.number][0] for p in parts)
        del self.uploads[upload_id]
        etag = f'"{hashlib.md5(body).hexdigest()}-{len(parts)}"'
        self.objects[key] = (body, etag, time.time())
        return etag

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self._op("abort_multipart")
        self.uploads.pop(upload_id, None)

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        await self._op("list_parts")
        if upload_id not in self.uploads:
            raise NotFound(upload_id)
        return [Part(n, e, len(b)) for n, (b, e) in sorted(self.uploads[upload_id][1].items())]

    async def list_multipart_uploads(self, prefix: str, *, limit: int = 1000) -> list[MultipartInfo]:
        await self._op("list_multipart_uploads")
        return [MultipartInfo(k, uid, t) for uid, (k, _, t) in self.uploads.items()
                if k.startswith(prefix)][:limit]
