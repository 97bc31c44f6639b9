"""Units of chunked videos in storage: create, read, change by CAS, outputs and their garbage.

Each unit is its own document, ``videos/<id>/units/<unit>.json`` (node/records/layout.py), so
the nodes working on different chunks of one video never race on one key (SeaweedFS makes a
loser of a contended conditional write wait in ~1 s steps: DESIGN "Facts measured").  Every
change goes through :meth:`ChunkStore.change`: :func:`storage.cas.update` with the pure step of
node/chunks/state.py, re-checked on every lost race; a holder passes the version it wrote last
(``known``) so a renewal costs one request.

Log lines, one per change of state or epoch: ``chunk_claimed`` (and, when the claim took the
unit from another holder, ``chunk_lost`` naming that holder and its epoch first),
``chunk_committed``, ``chunk_state`` (released, failed).

Outputs of one attempt go under ``videos/<id>/chunks/<unit>/<epoch>/``; :meth:`collect_stale`
deletes every epoch prefix that can never be committed (``state.stale_epoch``), and only the
committed epoch of a unit is ever listed for stitching or served.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import storage
from storage import cas

from node import log
from node.chunks import state
from node.chunks.plan import Plan
from node.chunks.state import ChunkDoc
from node.records import layout
from node.records.store import apply_step

UNIT_LIST_LIMIT = 100_001  # Invariant: a plan has at most 100,000 chunks plus the audio unit


class UnsupportedChunk(storage.StorageError):
    """A unit document of a newer format than this node knows: left alone, never rewritten."""


def plan_units(plan: Plan) -> list[str]:
    """The units a plan makes: its chunks, and the audio track when the source has audio."""
    return [state.unit_name(c.index) for c in plan.chunks] + ([state.AUDIO] if plan.has_audio else [])


def unit_weights(plan: Plan) -> dict[str, float]:
    """Each unit's share of the work, for the overall progress: a chunk's duration; audio ~2%."""
    w = {state.unit_name(c.index): c.duration for c in plan.chunks}
    if plan.has_audio:
        w[state.AUDIO] = 0.02 * plan.duration
    return w


def _check_format(doc: ChunkDoc) -> None:
    if doc.get("format", 0) > state.CHUNK_FORMAT:
        raise UnsupportedChunk(f"unit {doc.get('unit')} has format {doc['format']}, newer than "
                               f"this node's {state.CHUNK_FORMAT}")


class ChunkStore:
    def __init__(self, store: storage.ObjectStore, node_id: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.node_id = node_id
        self.clock = clock

    # ---- documents ------------------------------------------------------------------------------
    async def create_units(self, vid: str, plan: Plan) -> list[ChunkDoc]:
        """Create every unit of ``plan`` that does not exist yet (``If-None-Match``); return all.

        Idempotent: an owner that died half-way and its successor create the same set, and a
        unit another node already claimed or committed is kept as it is."""
        out = []
        for unit in plan_units(plan):
            key = layout.unit_doc_key(vid, unit)
            doc = state.new_chunk(vid, unit, plan.made_by_epoch, self.clock())
            try:
                await cas.create(self.store, key, doc)
            except storage.PreconditionFailed:
                v = await cas.read(self.store, key)
                if v is None:  # deleted meanwhile (the video was deleted): nothing to keep
                    continue
                doc = v.doc
            out.append(doc)
        return out

    async def get(self, vid: str, unit: str) -> cas.Versioned | None:
        v = await cas.read(self.store, layout.unit_doc_key(vid, unit))
        if v is not None:
            _check_format(v.doc)
        return v

    async def units(self, vid: str) -> list[ChunkDoc]:
        """Every unit document of ``vid``, in unit order (chunks by time, then ``audio``)."""
        out = []
        for info in await self.store.list_all(layout.units_prefix(vid), max_keys=UNIT_LIST_LIMIT):
            v = await cas.read(self.store, info.key)
            if v is not None:
                _check_format(v.doc)
                out.append(v.doc)
        return sorted(out, key=lambda d: (d["unit"] == state.AUDIO, d["unit"]))

    async def change(self, vid: str, unit: str, step: Callable[[ChunkDoc], ChunkDoc], *,
                     known: cas.Versioned | None = None) -> cas.Versioned:
        """Apply a step of node/chunks/state.py by CAS; raise Refused (re-checked on every retry),
        NotFound (no such unit) or UnsupportedChunk.  Returns the version written."""
        version, old = await apply_step(self.store, layout.unit_doc_key(vid, unit), step, known=known,
                                        check=_check_format)
        _log_change(vid, old, version.doc)
        return version

    # ---- outputs --------------------------------------------------------------------------------
    async def put_output(self, vid: str, unit: str, epoch: int, rel: str, body: bytes, *,
                         content_type: str | None = None) -> None:
        await self.store.put(layout.chunk_out_prefix(vid, unit, epoch) + rel, body,
                             content_type=content_type)

    async def committed_outputs(self, doc: ChunkDoc) -> list[str]:
        """The object keys of a committed unit's output: its committed epoch only, ever."""
        if doc["state"] != state.COMMITTED:
            raise ValueError(f"unit {doc['unit']} is {doc['state']}, not committed")
        prefix = layout.chunk_out_prefix(doc["video"], doc["unit"], doc["output"]["epoch"])
        return [i.key for i in await self.store.list_all(prefix)]

    async def discard(self, vid: str, unit: str, epoch: int) -> int:
        """Delete one attempt's outputs (its lease was lost, or it failed)."""
        return await self.store.delete_prefix(layout.chunk_out_prefix(vid, unit, epoch))

    async def collect_stale(self, vid: str, docs: Iterable[ChunkDoc]) -> int:
        """Delete the outputs of every epoch that can never be committed; return objects deleted.

        Outputs of units the video no longer has a document for are left to the video's purge
        (deleted videos) so a unit created a moment ago is never collected by mistake."""
        by_unit = {d["unit"]: d for d in docs}
        deleted = 0
        for info in await self.store.list_all(layout.chunk_out_prefix(vid)):
            rest = info.key.removeprefix(layout.chunk_out_prefix(vid))
            unit, _, tail = rest.partition("/")
            epoch_s, _, _ = tail.partition("/")
            doc = by_unit.get(unit)
            if doc is None or not epoch_s.isdigit():
                continue
            if state.stale_epoch(doc, int(epoch_s)):
                await self.store.delete(info.key)
                deleted += 1
        if deleted:
            log.info("chunk_garbage_collected", video=vid, objects=deleted)
        return deleted


def _log_change(vid: str, old: ChunkDoc, new: ChunkDoc) -> None:
    """One line per change of state or epoch (renewals write none)."""
    if old["state"] == new["state"] and old["epoch"] == new["epoch"]:
        return
    last = new["history"][-1]
    fields = {k: v for k, v in last.items() if k not in ("state", "at", "node", "epoch", "lost")}
    if new["state"] == state.CLAIMED and new["epoch"] != old["epoch"]:
        lost = last.get("lost")
        if lost:
            log.warning("chunk_lost", video=vid, unit=new["unit"], epoch=lost["epoch"],
                        holder=lost["node"], taken_by=last["node"], reason=last.get("reason"))
        log.info("chunk_claimed", video=vid, unit=new["unit"], epoch=new["epoch"],
                 attempts=new["attempts"], **fields)
    elif new["state"] == state.COMMITTED:
        log.info("chunk_committed", video=vid, unit=new["unit"], epoch=new["epoch"], **fields)
    else:
        log.info("chunk_state", video=vid, unit=new["unit"], epoch=new["epoch"],
                 state=new["state"], was=old["state"], error=(new.get("error") or {}).get("code"),
                 **{k: v for k, v in fields.items() if k != "error"})
