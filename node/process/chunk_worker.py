"""Cooperative processing at run time: the owner coordinates a chunked video, every node
encodes the units placed on it.

Two roles, both inside the node's one :class:`node.process.worker.Worker` (its nursery, its
slots: ``processing.concurrency`` ffmpeg runs at once per node, whole videos and units alike):

* **The video's owner** (it holds the video's lease, as for any video) fixes the plan in the
  record by CAS (``lifecycle.attach_plan``; a successor reuses it and never downloads the
  source), creates the unit documents, then gives back its ffmpeg slot and waits: every
  ``min(recovery_interval, lease/3)`` it reads the units, folds their summary into its lease
  renewal (``lifecycle.note_chunks``: ``GET /v1/videos/<id>`` shows ``chunks`` and
  ``progress``), fails the video when a unit failed, and once every unit is committed stitches
  the playlists from the committed outputs (node/process/chunk_assemble.py), uploads them under
  ``out/<epoch>/`` (the master last) and commits ``ready`` once, naming each unit's committed
  epoch (``segments_from``).
* **Any node** (:meth:`ChunkWork.consider`, from the worker's scan of ``pending/``): for a
  processing video with a plan, it reads the units and claims, by CAS, those its claim policy
  gives it (node/chunks/placement.py: the ring by unit key, orphans of dead or expired holders,
  the idle steal), in order, while it has a free slot.  A node that lost a unit to another
  holder treats that holder as alive for 10 lease lengths (``Worker.defer``), as for videos, so
  two sides of a partition do not take a unit back and forth.  A unit attempt renews its lease every
  lease/3 with its progress, encodes (node/process/chunk_encode.py; the source through a
  presigned URL, so only its range is read), uploads its segments under its own epoch and
  commits by CAS naming that epoch.  A refused renewal or commit is ``chunk_lost``: the attempt
  stops and deletes its outputs.  The user's bytes failing (undecodable, a media limit) fail
  the unit, and with it the video; anything else releases the unit with backoff.

Safety is the units' and the video's epochs (node/chunks/state.py, node/records/lifecycle.py),
never this module's timing.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

import storage

from node import log
from node.chunks import state
from node.chunks.plan import Plan, PlanError
from node.chunks.store import ChunkStore, UnsupportedChunk, plan_units, unit_weights
from node.process.chunk_assemble import assemble
from node.process.chunk_encode import encode_audio, encode_chunk
from node.process.errors import MediaLimitExceeded, TranscodeError, UndecodableInput
from node.process.failure import classify
from node.process.lease import renew_every_third
from node.process.limits import run_bounds
from node.process.outputs import CONTENT_TYPES, put_each
from node.process.poster import poster_time
from node.records import layout, lifecycle
from node.records.lifecycle import Refused

if TYPE_CHECKING:
    from node.process.worker import Job, Worker

UPLOADS_IN_FLIGHT = 4  # segment PUTs at once per unit
PRESIGN_MARGIN = 300  # seconds a source URL outlives the unit's wall-clock bound


def summary(plan: Plan, docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """The ``chunks`` list and overall ``progress`` that ``GET /v1/videos/<id>`` shows. Pure."""
    ranges = {state.unit_name(c.index): c for c in plan.chunks}
    out = []
    for d in docs:
        c = ranges.get(d["unit"])
        holder = (d.get("lease") or {}).get("holder")
        last = (d.get("history") or [{}])[-1]
        out.append({"unit": d["unit"], "index": c.index if c else None,
                    "start": c.start if c else 0.0,
                    "duration": round(c.duration if c else plan.duration, 6),
                    "state": d["state"], "node": holder or last.get("node"),
                    "epoch": d["epoch"], "progress": 1.0 if d["state"] == state.COMMITTED
                    else d.get("progress", 0.0), "attempts": d.get("attempts", 0),
                    "lease_expires": (d.get("lease") or {}).get("expires"),
                    "retry_at": d.get("retry_at")})
    return out, state.overall_progress(docs, unit_weights(plan))


def nothing_to_claim(chunks: list[dict[str, Any]] | None, now: float,
                     holder_alive: Any) -> bool:
    """The owner's summary shows every unit committed, failed, or held by a live holder whose
    lease has not run out (a liveness shortcut: a wrong answer delays a claim by one renewal
    of the owner's, never decides one).  No summary yet: False (read the units).  Pure."""
    if not chunks:
        return False
    for ch in chunks:
        if ch["state"] == state.PENDING:
            return False
        if ch["state"] == state.CLAIMED and (
                not holder_alive(ch.get("node")) or (ch.get("lease_expires") or 0.0) <= now):
            return False
    return True


class ChunkWork:
    """The chunked half of a :class:`Worker` (see the module docstring)."""

    def __init__(self, worker: "Worker") -> None:
        self.w = worker
        self.chunks = ChunkStore(worker.store, worker.node_id, clock=worker.clock)
        self._rng = random.Random()

    # ---- the owner -------------------------------------------------------------------------------
    async def coordinate(self, job: "Job", plan: Plan) -> None:
        """Wait for every unit, then assemble and commit ``ready``; or fail the video."""
        w, vid = self.w, job.video
        job.phase = "chunks"
        await self.chunks.create_units(vid, plan)
        w.give_back_slot(job)  # waiting costs no ffmpeg: the owner encodes units meanwhile
        w.poke()
        poll = min(w.cfg.timing.recovery_interval, w.cfg.timing.lease_seconds / 3)
        while True:
            docs = await self.chunks.units(vid)
            job.summary, job.progress = summary(plan, docs)
            failed = state.first_failure(docs)
            if failed is not None:
                err = failed.get("error") or {}
                await w.fail_video(job, err.get("code") or "transcode_error",
                                   err.get("message") or "a chunk failed", unit=failed["unit"])
                return
            if state.all_committed(docs, plan_units(plan)):
                break
            await trio.sleep(poll)
        job.phase = "assembling"
        files, renditions = assemble(plan, docs)
        prefix = layout.out_prefix(vid, job.epoch)
        for rel, text in files.items():  # the master is the last key
            await w.store.put(prefix + rel, text.encode(),
                              content_type=CONTENT_TYPES[Path(rel).suffix])
        job.summary, job.progress = summary(plan, docs)
        segments_from = {"chunk_segments": plan.chunk_segments, "chunks": len(plan.chunks),
                         "units": state.committed_epochs(docs)}
        job.phase = "committing"
        first = next((d for d in docs if d["unit"] == state.unit_name(0)), None) or {}
        await w.commit_video(job, renditions, segments_from=segments_from, chunks=job.summary,
                             poster=bool((first.get("output") or {}).get("poster")))

    # ---- any node --------------------------------------------------------------------------------
    async def consider(self, vid: str, rec: dict[str, Any]) -> None:
        """Claim the units of ``vid`` this node may take now, while it has free slots.

        The record's summary (the owner's, at most one renewal old) spares the reads of the
        unit documents when it shows no unit anyone could claim (``nothing_to_claim``)."""
        w = self.w
        if nothing_to_claim(rec.get("chunks"), w.clock(),
                            lambda h: h != w.node_id and w.claim_policy.holder_alive(h)):
            return
        try:
            plan = Plan.from_doc(rec["plan"])
        except PlanError as e:
            log.warning("plan_unreadable", video=vid, epoch=rec.get("epoch"), error=str(e))
            return
        try:
            docs = await self.chunks.units(vid)
        except UnsupportedChunk as e:
            log.warning("chunk_unsupported", video=vid, error=str(e))
            return
        now = w.clock()
        idle = w.idle()
        decided = []
        for d in docs:
            key = f"{vid}/{d['unit']}"
            in_flight = key in w.stats.jobs
            deferring = w.deferring(key)  # we lost this unit lately: its holder counts as alive
            ok, _why = state.claimable(d, now, lambda h: h != w.node_id and (
                deferring or w.claim_policy.holder_alive(h)))
            if ok and not in_flight and w.claim_policy.should_claim_unit(
                    d, now=now, in_flight=in_flight, idle=idle, deferring=deferring):
                decided.append(d)
        for d in sorted(decided, key=lambda d: (d["unit"] != state.AUDIO, d["unit"])):
            if not w.slot_free():
                return
            await self._claim_and_start(vid, plan, d["unit"])

    async def _claim_and_start(self, vid: str, plan: Plan, unit: str) -> None:
        w = self.w
        deferring = w.deferring(f"{vid}/{unit}")
        alive = (lambda h: False if h == w.node_id else (deferring or w.claim_policy.holder_alive(h)))
        try:
            version = await self.chunks.change(vid, unit, lambda d: state.claim(
                d, w.node_id, w.clock(), w.cfg.timing.lease_seconds,
                max_attempts=w.cfg.processing.max_attempts, holder_alive=alive))
        except (Refused, storage.NotFound):
            return
        if version.doc["state"] != state.CLAIMED:
            return  # its attempts ran out: failed; the owner fails the video
        job = await w.start_unit_job(f"{vid}/{unit}", version.doc["epoch"])
        w.spawn(self._attempt, job, vid, plan, unit, version)

    async def _attempt(self, job: "Job", vid: str, plan: Plan, unit: str,
                       version: storage.Versioned) -> None:
        w = self.w
        epoch = job.epoch
        tmp = w.work_dir / "tmp" / f"{vid}-{unit}-{epoch}"
        known = [version]
        try:
            with trio.CancelScope() as lease_scope:
                async with trio.open_nursery() as n:
                    n.start_soon(self._renew_loop, job, vid, unit, known, lease_scope)
                    await self._work(job, vid, plan, unit, known, tmp)
                    n.cancel_scope.cancel()
            if lease_scope.cancelled_caught:
                await self._discard(vid, unit, epoch, "lease lost")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            w.end_unit_job(job)

    async def _renew_loop(self, job: "Job", vid: str, unit: str, known: list[storage.Versioned],
                          lease_scope: trio.CancelScope) -> None:
        """Renew the unit's lease as the video's holder does (``renew_every_third``), noting the
        encoder's progress on each renewal."""
        w = self.w
        t = w.cfg.timing.lease_seconds

        async def renew() -> float:
            known[0] = await self.chunks.change(vid, unit, lambda d: state.renew(
                d, w.node_id, job.epoch, w.clock(), t, progress=job.progress), known=known[0])
            return known[0].doc["lease"]["expires"]

        def failed(error: str, expires_in: float) -> None:
            log.warning("chunk_renew_failed", video=vid, unit=unit, epoch=job.epoch, error=error,
                        expires_in=round(expires_in, 3))

        await renew_every_third(t, (known[0].doc.get("lease") or {}).get("expires", 0.0), renew,
                                w.clock, lost=lambda why: self._lost(job, vid, unit, lease_scope, why),
                                failed=failed, refusals=(Refused, storage.NotFound, UnsupportedChunk))

    def _lost(self, job: "Job", vid: str, unit: str, lease_scope: trio.CancelScope, reason: str) -> None:
        w = self.w
        log.warning("chunk_lost", video=vid, unit=unit, epoch=job.epoch, holder=w.node_id, reason=reason)
        w.stats.units_lost += 1
        w.defer(f"{vid}/{unit}")
        lease_scope.cancel()

    async def _work(self, job: "Job", vid: str, plan: Plan, unit: str,
                    known: list[storage.Versioned], tmp: Path) -> None:
        w = self.w
        epoch = job.epoch
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            job.phase = "reading"
            index = state.unit_index(unit)
            length = plan.duration if index is None else plan.chunks[index].duration
            src = await self._source(vid, tmp, length)
            job.phase = "transcoding"

            def progress(fraction: float) -> None:
                job.progress = fraction

            out_dir = tmp / "out"
            if index is None:
                out = await encode_audio(src, out_dir, plan, limits=w.cfg.media, on_progress=progress)
            else:
                out = await encode_chunk(src, out_dir, plan, plan.chunks[index], limits=w.cfg.media,
                                         on_progress=progress)
            output = out.commit_output()
            files = [f for f in out.files if f.suffix == ".ts"]
            if index == 0:  # chunk 0's holder makes the video's poster (node/process/poster.py)
                job.phase = "poster"
                poster = await w.poster(vid, epoch, src, out_dir,
                                        poster_time(plan.duration, within=plan.chunks[0].duration),
                                        container=plan.source.get("container") or None,
                                        video_stream=plan.source.get("video_stream"))
                output["poster"] = poster is not None
                files += [poster] if poster is not None else []
            job.phase = "uploading"
            limit = trio.Semaphore(UPLOADS_IN_FLIGHT)

            async def put(f: Path) -> None:
                async with limit:
                    await self.chunks.put_output(vid, unit, epoch, f.relative_to(out_dir).as_posix(),
                                                 f.read_bytes(), content_type=CONTENT_TYPES.get(f.suffix))

            await put_each(put, files)
            job.phase = "committing"
            try:
                known[0] = await self.chunks.change(vid, unit, lambda d: state.commit(
                    d, w.node_id, epoch, w.clock(), output), known=known[0])
            except (Refused, storage.NotFound) as e:
                v = await self.chunks.get(vid, unit)
                if v is not None and v.doc["state"] == state.COMMITTED and v.doc["output"]["epoch"] == epoch:
                    return  # our write landed but its answer was lost
                log.warning("chunk_lost", video=vid, unit=unit, epoch=epoch, holder=w.node_id,
                            reason=getattr(e, "message", str(e)))
                w.defer(f"{vid}/{unit}")
                await self._discard(vid, unit, epoch, "commit lost")
                return
            w.stats.units_committed += 1
        except (UndecodableInput, MediaLimitExceeded) as e:
            f = classify(e)
            log.warning("input_refused", video=vid, unit=unit, epoch=epoch, code=f.code, error=f.message)
            await self._end(vid, unit, epoch, lambda d: state.fail(
                d, w.node_id, epoch, w.clock(), f.code, f.message))
        except (TranscodeError, storage.StorageError, OSError) as e:
            f = classify(e)
            attempts = known[0].doc.get("attempts", 1)
            p = w.cfg.processing
            delay = lifecycle.backoff(attempts, p.backoff_base, p.backoff_max, self._rng)
            log.warning("chunk_attempt_failed", video=vid, unit=unit, epoch=epoch,
                        error=f"{type(e).__name__}: {e}"[:500], retry_in=round(delay, 2))
            await self._end(vid, unit, epoch, lambda d: state.release(
                d, w.node_id, epoch, w.clock(), f.code, f.message, delay=delay))

    async def _source(self, vid: str, tmp: Path, length: float) -> str | Path:
        """What ffmpeg reads: a presigned URL of the source (ranged reads), or, where the store
        cannot presign (the in-memory twin), a local copy."""
        w = self.w
        bounds = run_bounds(length, w.cfg.media)
        url = await w.store.presign_get(layout.source_key(vid),
                                        expires=int(bounds.wall_seconds) + PRESIGN_MARGIN)
        if url is not None:
            return url
        path = tmp / "source"
        await w.store.download_to(layout.source_key(vid), path)
        return path

    async def _end(self, vid: str, unit: str, epoch: int, step: Any) -> None:
        """Fail or release the unit, then drop its outputs (shielded: cleanup)."""
        await self._discard(vid, unit, epoch, "attempt ended")
        with trio.CancelScope(shield=True):
            with trio.move_on_after(15):
                try:
                    await self.chunks.change(vid, unit, step)
                except (Refused, storage.StorageError) as e:
                    log.warning("chunk_release_failed", video=vid, unit=unit, epoch=epoch, error=str(e))

    async def _discard(self, vid: str, unit: str, epoch: int, why: str) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(30):
                try:
                    v = await self.chunks.get(vid, unit)
                    if v is not None and v.doc["state"] == state.COMMITTED and v.doc["output"]["epoch"] == epoch:
                        return  # Invariant: never delete what a commit names
                    n = await self.chunks.discard(vid, unit, epoch)
                    log.info("chunk_discarded", video=vid, unit=unit, epoch=epoch, reason=why, objects=n)
                except storage.StorageError as e:
                    log.warning("cleanup_failed", video=vid, unit=unit, epoch=epoch, error=str(e))

    # ---- garbage ---------------------------------------------------------------------------------
    async def settle(self, rec: dict[str, Any]) -> None:
        """Chunk garbage of a terminal video: a ready chunked video keeps its committed unit
        epochs only; any other terminal video (failed, or made ready by one whole run) keeps none."""
        vid = rec["id"]
        if rec["state"] == lifecycle.READY and rec.get("segments_from"):
            await self.chunks.collect_stale(vid, await self.chunks.units(vid))
        elif rec["state"] in (lifecycle.READY, lifecycle.FAILED):
            n = await self.w.store.delete_prefix(layout.chunk_out_prefix(vid))
            if n:
                log.info("chunk_garbage_collected", video=vid, objects=n)
