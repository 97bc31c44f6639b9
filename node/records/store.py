"""Video records in storage: create, read, list, change by CAS, delete.

Every state change goes through :meth:`VideoStore.change`, which writes by
compare-and-swap and emits exactly one ``video_state`` log line per change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import trio

import storage
from storage import cas

from node.records import layout, lifecycle

from node import log
from node.records.lifecycle import Record, Refused


class UploadError(Exception):
    """A one-shot upload was refused; ``status``/``code`` are the API answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class IngestResult:
    record: Record
    created: bool  # False: an Idempotency-Key retry answered with the existing video


class VideoStore:
    def __init__(self, store: storage.ObjectStore, node_id: str, *, part_size: int,
                 parts_in_flight: int = 2, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.node_id = node_id
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self.clock = clock

    # ---- reads ----------------------------------------------------------------------------
    async def get(self, vid: str) -> cas.Versioned | None:
        return await cas.read(self.store, layout.record_key(vid))

    async def list(self, *, state: str | None, limit: int, cursor: str | None,
                   scan_limit: int = 2000) -> tuple[list[Record], str | None]:
        """Videos in creation order after ``cursor``; reads at most ``scan_limit`` records a call.

        Invariant: one call costs at most ``scan_limit + ceil(scan_limit / 200)`` storage reads
        (record GETs plus catalog LIST pages), whatever the catalog holds.
        Returns ``(videos, next_cursor)``; ``next_cursor`` is None at the end of the catalog.
        """
        out: list[Record] = []
        after = layout.catalog_key(cursor) if cursor else None
        scanned = 0
        while scanned < scan_limit:
            page_size = min(200, scan_limit - scanned)
            page = await self.store.list("catalog/", start_after=after, limit=page_size)
            for info in page:
                after = info.key
                scanned += 1
                v = await self.get(info.key.removeprefix("catalog/"))
                if v is not None and (state is None or v.doc["state"] == state):
                    out.append(v.doc)
                    if len(out) >= limit:
                        return out, v.doc["id"]
            if len(page) < page_size:
                return out, None
        return out, (after or "").removeprefix("catalog/") or None

    # ---- changes ------------------------------------------------------------------------------
    async def change(self, vid: str, step: Callable[[Record], Record], *,
                     event: str | None = None, **fields: Any) -> Record:
        """Apply a lifecycle step by CAS; raise Refused (re-checked on every retry) or NotFound."""
        refused: list[Refused] = []
        before: list[Record] = []

        def decide(doc: Record | None):
            if doc is None:
                raise storage.NotFound(vid)
            try:
                new = step(doc)
            except Refused as r:
                refused.append(r)
                return storage.Keep(r.message)
            before[:] = [doc]
            return new

        version, wrote = await cas.update(self.store, layout.record_key(vid), decide)
        if not wrote:
            raise refused[-1]
        new = version.doc  # type: ignore[union-attr]
        old = before[0]
        if old["state"] != new["state"] or old.get("epoch") != new.get("epoch") or (
                new.get("history") and old.get("history") and len(new["history"]) != len(old["history"])):
            last = new["history"][-1]
            log.info(event or "video_state", video=vid, epoch=new.get("epoch"), state=new["state"],
                     was=old["state"], **{k: v for k, v in last.items()
                                          if k not in ("state", "at", "node", "epoch")}, **fields)
        return new

    async def create(self, rec: Record) -> Record:
        """Index, then create the record (If-None-Match).  Index entries without a record are
        harmless: recovery and listing skip them."""
        vid = rec["id"]
        if rec["state"] not in lifecycle.TERMINAL:
            await self.store.put(layout.pending_key(vid), b"")
        await self.store.put(layout.catalog_key(vid), b"")
        await cas.create(self.store, layout.record_key(vid), rec)
        log.info("video_state", video=vid, epoch=0, state=rec["state"], was=None,
                 size=rec.get("size"), filename=rec.get("filename"))
        return rec

    # ---- one-shot upload ----------------------------------------------------------------------
    async def ingest(self, body: AsyncIterator[bytes], *, content_length: int,
                     filename: str | None, idempotency_key: str | None) -> IngestResult:
        """Stream a request body into ``videos/<id>/source`` and create the record.

        Nothing is promised (and nothing is visible) until the multipart upload is complete
        and the record exists.  With an Idempotency-Key, a retry returns the first video.
        """
        if idempotency_key is not None:
            existing = await self._idempotent_lookup(idempotency_key)
            if existing is not None:
                return IngestResult(existing, False)
        vid = layout.new_id(self.clock())
        key = layout.source_key(vid)
        async with storage.StreamingUpload(self.store, key,
                                           part_size=storage.part_size_for(content_length, self.part_size),
                                           parts_in_flight=self.parts_in_flight,
                                           total=content_length) as up:
            async for chunk in body:
                if up.size + len(chunk) > content_length:
                    raise UploadError(400, "body_too_long",
                                      f"body is longer than Content-Length ({content_length} bytes)")
                await up.write(chunk)
            if up.size != content_length:
                raise UploadError(400, "body_too_short",
                                  f"body ended after {up.size} of {content_length} bytes")
            await up.complete(if_none_match=True)
        sha = up.sha256.hexdigest()
        if idempotency_key is not None:
            try:
                await cas.create(self.store, layout.idem_key(idempotency_key), {"id": vid, "at": self.clock()})
            except storage.PreconditionFailed:
                # a concurrent request with the same key won: ours is garbage
                with trio.CancelScope(shield=True):
                    await self.store.delete(key)
                existing = await self._idempotent_lookup(idempotency_key)
                if existing is None:
                    raise UploadError(409, "upload_in_progress",
                                      "another upload with this Idempotency-Key is finishing; retry")
                return IngestResult(existing, False)
        rec = lifecycle.new_record(vid, self.node_id, self.clock(), state=lifecycle.UPLOADED,
                                   filename=filename, size=content_length, sha256=sha)
        await self.create(rec)
        return IngestResult(rec, True)

    async def _idempotent_lookup(self, client_key: str) -> Record | None:
        m = await cas.read(self.store, layout.idem_key(client_key))
        if m is None:
            return None
        vid = m.doc["id"]
        v = await self.get(vid)
        if v is not None:
            return v.doc
        # The first request stored the source and the key, then died before the record:
        # finish its work (the record create is itself idempotent by If-None-Match).
        info = await self.store.head(layout.source_key(vid))
        rec = lifecycle.new_record(vid, self.node_id, self.clock(), state=lifecycle.UPLOADED,
                                   filename=None, size=info.size)
        try:
            await self.create(rec)
        except storage.PreconditionFailed:
            v = await self.get(vid)
            assert v is not None
            return v.doc
        return rec

    # ---- delete -------------------------------------------------------------------------------
    async def delete(self, vid: str) -> Record:
        rec = await self.change(vid, lambda r: lifecycle.delete(r, self.node_id, self.clock()))
        await self.purge(vid)
        return rec

    async def purge(self, vid: str) -> None:
        """Remove every object of a deleted video except its record (the tombstone)."""
        for info in await self.store.list_all(layout.video_prefix(vid)):
            if info.key != layout.record_key(vid):
                await self.store.delete(info.key)
        for mp in await self.store.list_multipart_uploads(layout.video_prefix(vid)):
            await self.store.abort_multipart(mp.key, mp.upload_id)
        await self.store.delete(layout.pending_key(vid))
