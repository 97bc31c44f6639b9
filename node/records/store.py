"""Video records in storage: create, read, list, change by CAS, delete.

Every state change goes through :meth:`VideoStore.change`, which writes by
compare-and-swap (:func:`storage.cas.update`) and emits exactly one ``video_state``
log line per change.  Getting a video's bytes in is ``node.upload``'s.

With an :class:`~node.records.outbox.Outbox` (webhooks configured), a change or a creation
that enters ``uploaded``, ``ready``, ``failed`` or ``deleted`` writes the event's outbox entry
before its CAS (predicted from the record as read) and again, create-if-absent, after it
(node/records/outbox.py says why no event is lost).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import storage
from storage import cas

from node.records import layout, lifecycle, outbox as outbox_

from node import log
from node.records.lifecycle import Record, Refused


async def apply_step(store: storage.ObjectStore, key: str, step: Callable[[dict], dict], *,
                     known: storage.Versioned | None = None, check: Callable[[dict], None] | None = None,
                     missing: str | None = None) -> tuple[storage.Versioned, dict]:
    """Apply a lifecycle step to the document at ``key`` by CAS (the one loop, storage.cas.update).

    The step runs again on every retry, so a :class:`Refused` is re-checked against the latest
    document and raised only when the last one refuses; ``check(doc)`` runs first on each (a
    format check may raise).  :class:`storage.NotFound` (naming ``missing``, else ``key``) when
    there is no document.  Returns the version written and the document it replaced."""
    refused: list[Refused] = []
    before: list[dict] = []

    def decide(doc: dict | None) -> Any:
        if doc is None:
            raise storage.NotFound(missing or key)
        if check is not None:
            check(doc)
        try:
            new = step(doc)
        except Refused as r:
            refused.append(r)
            return storage.Keep(r.message)
        before[:] = [doc]
        return new

    version, wrote = await cas.update(store, key, decide, known=known)
    if not wrote:
        raise refused[-1]
    assert version is not None
    return version, before[0]


class VideoStore:
    def __init__(self, store: storage.ObjectStore, node_id: str, *,
                 clock: Callable[[], float] = time.time,
                 outbox: outbox_.Outbox | None = None) -> None:
        self.store = store
        self.node_id = node_id
        self.clock = clock
        self.outbox = outbox  # None: webhooks off, no outbox writes

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
        known = await self._write_intent(vid, step) if self.outbox is not None else None
        version, old = await apply_step(self.store, layout.record_key(vid), step, known=known, missing=vid)
        new = version.doc
        if old["state"] != new["state"] or old.get("epoch") != new.get("epoch") or (
                new.get("history") and old.get("history") and len(new["history"]) != len(old["history"])):
            last = new["history"][-1]
            log.info(event or "video_state", video=vid, epoch=new.get("epoch"), state=new["state"],
                     was=old["state"], **{k: v for k, v in last.items()
                                          if k not in ("state", "at", "node", "epoch")}, **fields)
        if self.outbox is not None and (ev := outbox_.event_of(old, new)) is not None:
            await self._write_after(ev)
        return new

    async def _write_after(self, ev: outbox_.Event) -> None:
        """The second outbox write, after the commit: create-if-absent.  The transition is
        committed whatever happens here, so a storage error is logged, not raised (the entry
        written before the CAS is normally there)."""
        assert self.outbox is not None
        try:
            await self.outbox.write(ev)
        except storage.StorageError as e:
            log.warning("webhook_outbox_write_failed", video=ev.video, epoch=ev.epoch,
                        webhook=ev.event, id=ev.id, error=str(e))

    async def _write_intent(self, vid: str, step: Callable[[Record], Record]) -> cas.Versioned | None:
        """Read the record, predict the step's outcome and write its event's outbox entry before
        the CAS; return the version read, which the CAS then tries first (no second read)."""
        assert self.outbox is not None
        cur = await self.get(vid)
        if cur is None:
            return None
        try:
            predicted = step(cur.doc)
        except Refused:
            return cur
        if (ev := outbox_.event_of(cur.doc, predicted)) is not None:
            await self.outbox.write(ev)
        return cur

    async def create(self, rec: Record) -> Record:
        """Index, then create the record (If-None-Match).  Index entries without a record are
        harmless: recovery and listing skip them; so is an outbox entry without one (dropped
        after ``webhooks.intent_grace``)."""
        vid = rec["id"]
        ev = outbox_.event_of(None, rec) if self.outbox is not None else None
        if rec["state"] not in lifecycle.TERMINAL:
            await self.store.put(layout.pending_key(vid), b"")
        await self.store.put(layout.catalog_key(vid), b"")
        if ev is not None:
            await self.outbox.write(ev)  # type: ignore[union-attr]
        await cas.create(self.store, layout.record_key(vid), rec)
        log.info("video_state", video=vid, epoch=0, state=rec["state"], was=None,
                 size=rec.get("size"), filename=rec.get("filename"))
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
