"""The processing worker: claims pending videos by lease, transcodes, commits by CAS.

One attempt of one video, on one node:

1. claim    CAS: state processing, epoch+1, lease {holder: me, expires}, attempts+1
2. renew    CAS every lease/3 while working (each try bounded by lease/3); a refusal means the
            video was handed off, deleted or failed: the attempt is cancelled at once
            (``lost_lease``).  So is an attempt whose lease ran out on this node's clock with no
            renewal answered (storage unreachable, e.g. a partition): others may claim it now
3. work     download the source to a temp dir, probe in a child process, ffmpeg to the
            ladder (both bounded by ``media:``), upload everything under ``out/<epoch>/``
4. commit   CAS to `ready` naming the epoch; refused -> ``commit_lost``, our outputs are garbage
            and we delete them (never when the record names our epoch)

The user's file failing (undecodable, over a media limit) makes the video `failed` at once, no
retry; infrastructure failures release the lease with a backoff (``release_for_retry``);
``attempts`` is bounded by ``processing.max_attempts``.  Which one, and the public error
message, is decided by node/process/failure.py.  Which videos to look at
comes from the small ``pending/`` index, scanned every ``recovery_interval`` and
at once when an upload lands on this node (:meth:`Worker.poke`).
"""

from __future__ import annotations

import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import trio

import storage

from node.records import layout, lifecycle

from node import log

from node.chunks.plan import PLAN_FORMAT, Plan, PlanError
from node.process import ffmpeg
from node.process.chunk_encode import plan_video
from node.process.chunk_worker import ChunkWork
from node.process.lease import renew_every_third
from node.process.outputs import CONTENT_TYPES, put_each
from node.process.poster import make_poster, poster_time
from node.process.errors import MediaLimitExceeded, TranscodeError, UndecodableInput
from node.process.failure import classify
from node.process.ladder import plan_ladder
from node.config import Config
from node.records.lifecycle import Record, Refused
from node.process.probe_isolated import probe_isolated
from node.records.store import VideoStore

PENDING_SCAN_LIMIT = 1000  # ids read from the pending index per scan
ORPHAN_INDEX_AGE = 3600.0  # a pending entry without a record is removed after this


def master_bandwidths(master: str) -> dict[str, int]:
    """BANDWIDTH per rendition NAME as the master playlist states it (measured by transcode)."""
    out: dict[str, int] = {}
    for line in master.splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            bw = re.search(r"(?:^|[:,])BANDWIDTH=(\d+)", line)
            name = re.search(r'NAME="([^"]+)"', line)
            if bw and name:
                out[name.group(1)] = int(bw.group(1))
    return out


def bucket_missing(e: BaseException) -> bool:
    """``e`` says the bucket itself does not exist (S3's NoSuchBucket), not a key: a fresh
    cluster's first scans can run before the node's storage probe has created the bucket."""
    return isinstance(e, storage.NotFound) and "NoSuchBucket" in str(e)


class ClaimPolicy(Protocol):
    """Who may try to claim, beyond the lease rules of :mod:`node.records.lifecycle`.

    The worker asks :meth:`should_claim` before every claim CAS and :meth:`holder_alive` to
    judge another node's lease; the node gives it the ring's answer (``node.cluster.RingClaims``).
    Safety never depends on either: the lease and epoch in storage decide who commits.
    """

    def holder_alive(self, holder: str) -> bool:
        """Does gossip say ``holder`` (another node holding a lease) is alive?"""
        ...

    def should_claim(self, vid: str, rec: Record, *, now: float, deferring: bool,
                     in_flight: bool) -> bool:
        """Should this node try to claim ``vid`` now?  ``deferring``: this node lost the video's
        lease to its holder lately (the holder counts as alive); ``in_flight``: this process
        runs an attempt of it."""
        ...

    def should_claim_unit(self, doc: dict[str, Any], *, now: float, in_flight: bool,
                          idle: bool, deferring: bool) -> bool:
        """Should this node try to claim this unit of a chunked video (node/chunks/placement.py)?
        ``idle``: this node runs no ffmpeg now; ``deferring``: it lost this unit lately (its
        holder counts as alive)."""
        ...


class ClaimAny:
    """A node alone (tests without gossip): every video may be claimed, every holder is alive."""

    def holder_alive(self, holder: str) -> bool:
        return True

    def should_claim(self, vid: str, rec: Record, *, now: float, deferring: bool,
                     in_flight: bool) -> bool:
        return True

    def should_claim_unit(self, doc: dict[str, Any], *, now: float, in_flight: bool,
                          idle: bool, deferring: bool) -> bool:
        return True


@dataclass
class Job:
    video: str
    epoch: int
    started: float
    attempts: int = 1
    phase: str = "claimed"
    progress: float = 0.0
    holds_slot: bool = True  # Invariant: True while this job counts against processing.concurrency
    summary: list[dict[str, Any]] | None = None  # a chunked video's units, as its owner saw them


@dataclass
class WorkerStats:
    claims: int = 0
    commits: int = 0
    commits_lost: int = 0
    leases_lost: int = 0
    failures: int = 0
    retries: int = 0
    scans: int = 0
    units_committed: int = 0
    units_lost: int = 0  # unit attempts stopped: refused renewal, or the lease ran out unrenewed
    jobs: dict[str, Job] = field(default_factory=dict)


class Worker:
    def __init__(self, videos: VideoStore, cfg: Config, node_id: str, work_dir: Path, *,
                 claim_policy: ClaimPolicy | None = None,
                 clock: Callable[[], float] = time.time,
                 on_transcoded: Callable[[float, float], None] = lambda _s, _v: None) -> None:
        """``on_transcoded(seconds, video_seconds)``: one ffmpeg run finished, after ``seconds``
        of wall-clock time, for a source of ``video_seconds`` (the node's metrics)."""
        self.videos = videos
        self.store = videos.store
        self.cfg = cfg
        self.node_id = node_id
        self.work_dir = work_dir
        self.claim_policy: ClaimPolicy = claim_policy if claim_policy is not None else ClaimAny()
        self.clock = clock
        self.on_transcoded = on_transcoded
        self.stats = WorkerStats()
        self._wake = trio.Event()
        self._slots = trio.Semaphore(max(1, cfg.processing.concurrency))
        self._rng = random.Random()
        self._nursery: trio.Nursery | None = None
        # Videos whose lease this node lost to another node: until the deadline, their holder
        # counts as alive whatever gossip says, so two nodes that cannot see each other (a
        # partition) do not steal a video back and forth; only lease expiry hands it back.
        self._deferring: dict[str, float] = {}
        self.units = ChunkWork(self)

    def deferring(self, vid: str) -> bool:
        until = self._deferring.get(vid)
        if until is None:
            return False
        if until <= trio.current_time():
            del self._deferring[vid]
            return False
        return True

    def defer(self, vid: str) -> None:
        """Count the holder that took ``vid`` (a video id, or ``<video>/<unit>``) as alive for 10
        lease lengths, whatever gossip says."""
        self._defer(vid)

    def _lost_to_another(self, vid: str) -> None:
        """This node's attempt at ``vid`` lost its lease (a refused renewal, plan or commit
        can all say so): counted, and the taker counts as alive for a while (:meth:`defer`)."""
        self.stats.leases_lost += 1
        self._defer(vid)

    def _defer(self, vid: str) -> None:
        if len(self._deferring) > 10_000:  # bounded: drop the oldest half
            for k in sorted(self._deferring, key=self._deferring.__getitem__)[:5_000]:
                del self._deferring[k]
        self._deferring[vid] = trio.current_time() + 10 * self.cfg.timing.lease_seconds

    # ---- service ---------------------------------------------------------------------------------
    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        shutil.rmtree(self.work_dir / "tmp", ignore_errors=True)  # leftovers of a previous life
        (self.work_dir / "tmp").mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                try:
                    await self.scan_once()
                except storage.StorageError as e:
                    # Storage out of reach, or not set up yet: the next scan retries.
                    if isinstance(e, storage.StorageUnavailable) or bucket_missing(e):
                        log.warning("recovery_scan_failed", error=str(e))
                    else:
                        log.error("recovery_scan_failed", error=str(e))
                with trio.move_on_after(self.cfg.timing.recovery_interval):
                    await self._wake.wait()
                self._wake = trio.Event()

    def poke(self) -> None:
        """Look at the pending index now (an upload landed, or membership changed)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self.stats.jobs)

    # ---- recovery scan ------------------------------------------------------------------------
    async def scan_once(self) -> None:
        self.stats.scans += 1
        now = self.clock()
        for info in await self.store.list("pending/", limit=PENDING_SCAN_LIMIT):
            vid = info.key.removeprefix("pending/")
            if not layout.valid_id(vid):
                continue
            job = self.stats.jobs.get(vid)
            if job is not None and job.summary is None:
                continue  # our own whole-video attempt runs
            v = await self.videos.get(vid)
            if v is None:
                if now - info.last_modified > ORPHAN_INDEX_AGE:
                    await self.store.delete(info.key)
                continue
            rec = v.doc
            if rec["state"] in lifecycle.TERMINAL:
                await self._settle(rec)  # a previous cleanup was interrupted
                continue
            if (rec.get("plan") or {}).get("format", 0) > PLAN_FORMAT:
                continue  # a newer node's plan: left alone (docs/lifecycle.md "Mixed versions")
            if rec["state"] == lifecycle.PROCESSING and rec.get("plan") and self.slot_free():
                await self.units.consider(vid, rec)
            if job is not None:
                continue  # we coordinate it: only its units were ours to consider
            # a lease this node holds but no job of this process runs is from a previous life
            deferring = self.deferring(vid)
            policy = self.claim_policy
            alive = (lambda h, _d=deferring: False if h == self.node_id else (_d or policy.holder_alive(h)))
            ok, _why = lifecycle.claimable(rec, now, alive)
            if not ok or not policy.should_claim(vid, rec, now=now, deferring=deferring,
                                                 in_flight=vid in self.stats.jobs):
                continue
            if self._slots.value == 0:
                return  # busy; the next scan picks the rest up
            await self._claim_and_start(vid, alive)

    async def _claim_and_start(self, vid: str, alive: Callable[[str], bool]) -> None:
        p = self.cfg.processing
        try:
            rec = await self.videos.change(
                vid, lambda r: lifecycle.claim(r, self.node_id, self.clock(), self.cfg.timing.lease_seconds,
                                               max_attempts=p.max_attempts, holder_alive=alive),
                event="video_claimed")
        except (Refused, storage.NotFound):
            return
        if rec["state"] == lifecycle.FAILED:  # attempts exhausted
            self.stats.failures += 1
            await self._settle(rec)
            return
        self.stats.claims += 1
        assert self._nursery is not None
        await self._slots.acquire()
        job = Job(vid, rec["epoch"], self.clock(), attempts=rec.get("attempts", 1))
        self.stats.jobs[vid] = job
        self._nursery.start_soon(self._attempt, job, rec)

    # ---- one attempt -----------------------------------------------------------------------------
    async def _attempt(self, job: Job, rec: Record) -> None:
        tmp = self.work_dir / "tmp" / f"{job.video}-{job.epoch}"
        try:
            with trio.CancelScope() as lease_scope:
                async with trio.open_nursery() as n:
                    n.start_soon(self._renew_loop, job, lease_scope, rec["lease"]["expires"])
                    await self._work(job, rec, tmp)
                    n.cancel_scope.cancel()
            if lease_scope.cancelled_caught:
                self._lost_to_another(job.video)
                await self._discard_outputs(job, "lease lost")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self.stats.jobs.pop(job.video, None)
            self.give_back_slot(job)
            self.poke()

    # ---- slots and jobs, shared with the chunked half (node/process/chunk_worker.py) --------------
    def give_back_slot(self, job: Job) -> None:
        """``job`` runs no ffmpeg any more (a chunked video's owner waiting for its units)."""
        if job.holds_slot:
            job.holds_slot = False
            self._slots.release()

    def slot_free(self) -> bool:
        return self._slots.value > 0

    def idle(self) -> bool:
        """No ffmpeg runs here now."""
        return self._slots.value == max(1, self.cfg.processing.concurrency)

    async def start_unit_job(self, key: str, epoch: int) -> Job:
        await self._slots.acquire()
        job = Job(key, epoch, self.clock())
        self.stats.jobs[key] = job
        return job

    def end_unit_job(self, job: Job) -> None:
        self.stats.jobs.pop(job.video, None)
        self.give_back_slot(job)
        self.poke()

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    async def _renew_loop(self, job: Job, lease_scope: trio.CancelScope, expires: float) -> None:
        """Renew the video's lease (:func:`renew_every_third`); a chunked video's owner carries
        the units' summary on each renewal."""
        t = self.cfg.timing.lease_seconds

        async def renew() -> float:
            if job.summary is None:
                step = (lambda r: lifecycle.renew(r, self.node_id, job.epoch, self.clock(), t))
            else:
                chunks, progress = job.summary, job.progress
                step = (lambda r: lifecycle.note_chunks(r, self.node_id, job.epoch, self.clock(),
                                                        t, chunks, progress))
            expires = (await self.videos.change(job.video, step))["lease"]["expires"]
            log.info("lease_renewed", video=job.video, epoch=job.epoch, expires=round(expires, 3))
            return expires

        def lost(reason: str) -> None:
            log.warning("lease_lost", video=job.video, epoch=job.epoch, reason=reason)
            lease_scope.cancel()

        def failed(error: str, expires_in: float) -> None:
            log.warning("lease_renew_failed", video=job.video, epoch=job.epoch, error=error,
                        expires_in=round(expires_in, 3))

        await renew_every_third(t, expires, renew, self.clock, lost=lost, failed=failed,
                                refusals=(Refused, storage.NotFound))

    async def _work(self, job: Job, rec: Record, tmp: Path) -> None:
        vid, epoch = job.video, job.epoch
        try:
            if rec.get("plan") is not None:  # a chunked video: its plan is fixed, reuse it
                try:
                    plan = Plan.from_doc(rec["plan"])
                except PlanError as e:
                    raise TranscodeError("the stored plan cannot be read", str(e)) from None
                await self.units.coordinate(job, plan)
                return
            tmp.mkdir(parents=True, exist_ok=True)
            src = tmp / "source"
            job.phase = "downloading"
            await self.store.download_to(layout.source_key(vid), src)
            job.phase = "probing"
            probe = await probe_isolated(src, self.cfg.media)
            if self.cfg.processing.chunked:
                chunk_plan = plan_video(probe, self.cfg.ladder, self.cfg.processing,
                                        made_by_epoch=epoch)
                if not chunk_plan.single:
                    shutil.rmtree(tmp, ignore_errors=True)  # the units read their own ranges
                    await self.videos.change(vid, lambda r: lifecycle.attach_plan(
                        r, self.node_id, epoch, chunk_plan.to_doc()))
                    log.info("video_planned", video=vid, epoch=epoch, chunks=len(chunk_plan.chunks),
                             chunk_seconds=chunk_plan.chunk_segments * chunk_plan.encoder.segment_seconds,
                             audio=chunk_plan.has_audio)
                    await self.units.coordinate(job, chunk_plan)
                    return
            plans = plan_ladder(probe, self.cfg.ladder)
            job.phase = "transcoding"
            out = tmp / "out"
            p = self.cfg.processing
            last_logged = [0.0]

            def progress(fraction: float) -> None:
                job.progress = fraction
                if fraction - last_logged[0] >= 0.25:
                    last_logged[0] = fraction
                    log.info("transcode_progress", video=vid, epoch=epoch, progress=round(fraction, 2))

            t0 = time.monotonic()
            files = await ffmpeg.transcode(src, out, plans, segment_seconds=p.segment_seconds,
                                          preset=p.preset, threads=p.ffmpeg_threads,
                                          has_audio=probe.has_audio, duration=probe.duration,
                                          on_progress=progress, video_stream=probe.video_stream,
                                          audio_stream=probe.audio_stream, limits=self.cfg.media,
                                          input_format=probe.container or None)
            self.on_transcoded(time.monotonic() - t0, probe.duration or 0.0)
            job.phase = "poster"
            poster = await self.poster(vid, epoch, src, out, poster_time(probe.duration),
                                       container=probe.container or None,
                                       video_stream=probe.video_stream)
            job.phase = "uploading"
            await self._upload_outputs(vid, epoch, out, ([poster] if poster else []) + files)
            job.phase = "committing"
            stated = master_bandwidths((out / "master.m3u8").read_text())
            renditions = [{"name": pl.name, "width": pl.width, "height": pl.height,
                           "bandwidth": stated.get(pl.name, pl.bandwidth)} for pl in plans]
            await self.commit_video(job, renditions, poster=poster is not None)
        except (UndecodableInput, MediaLimitExceeded) as e:  # the user's file: fail now
            await self._fail(job, e)
        except Refused as e:  # the plan could not be fixed: the epoch moved on
            self._lost_to_another(vid)
            log.warning("lease_lost", video=vid, epoch=epoch, reason=e.message)
        except (TranscodeError, storage.StorageError, OSError) as e:
            await self._release(job, e)

    async def poster(self, vid: str, epoch: int, src: str | Path, out_dir: Path, at: float,
                     **source: Any) -> Path | None:
        """The poster (node/process/poster.py) in ``out_dir``, or None when ffmpeg could not
        make one: logged as ``poster_failed``, and the video goes on without it."""
        try:
            return await make_poster(src, out_dir, at, limits=self.cfg.media, **source)
        except (TranscodeError, UndecodableInput, MediaLimitExceeded, OSError) as e:
            log.warning("poster_failed", video=vid, epoch=epoch, at=at,
                        error=f"{type(e).__name__}: {e}"[:300])
            return None

    async def _upload_outputs(self, vid: str, epoch: int, out: Path, files: list[Path]) -> None:
        """Everything under out/<epoch>/; master.m3u8 last (transcode returns it last)."""
        prefix = layout.out_prefix(vid, epoch)
        body_files = [f for f in files if f.name != "master.m3u8"]
        master = [f for f in files if f.name == "master.m3u8"]
        limit = trio.Semaphore(4)

        async def put(f: Path) -> None:
            async with limit:
                rel = f.relative_to(out).as_posix()
                await self.store.put(prefix + rel, f.read_bytes(),
                                     content_type=CONTENT_TYPES.get(f.suffix))

        await put_each(put, body_files)
        for f in master:
            await put(f)

    async def commit_video(self, job: Job, renditions: list[dict[str, Any]], **chunked: Any) -> None:
        """The single `ready` commit (``chunked``: ``poster``, and ``segments_from`` and
        ``chunks`` of a chunked video, see ``lifecycle.commit_ready``)."""
        vid, epoch = job.video, job.epoch
        try:
            await self.videos.change(vid, lambda r: lifecycle.commit_ready(
                r, self.node_id, epoch, self.clock(), renditions, **chunked))
        except Refused as e:
            v = await self.videos.get(vid)
            if v is not None and v.doc.get("ready_epoch") == epoch:
                pass  # our write landed but its answer was lost: we did commit
            else:
                self.stats.commits_lost += 1
                self._defer(vid)
                log.warning("commit_lost", video=vid, epoch=epoch, reason=e.message,
                            winner_epoch=v.doc.get("ready_epoch") if v else None)
                await self._discard_outputs(job, "commit lost")
                return
        self.stats.commits += 1
        log.info("video_committed", video=vid, epoch=epoch,
                 seconds=round(self.clock() - job.started, 3))
        with trio.CancelScope(shield=True):
            with trio.move_on_after(30):
                v = await self.videos.get(vid)
                if v is not None:
                    await self._settle(v.doc)

    async def _settle(self, rec: Record) -> None:
        """Garbage of a terminal video, then its pending entry.

        The entry goes last, so a crash in between leaves it and the next scan finishes the
        job; and only once the video has been terminal for two lease lengths, so outputs that a
        stale attempt was still writing (or failed to discard, storage being down) are
        collected by a later scan."""
        vid = rec["id"]
        try:
            if rec["state"] != lifecycle.DELETED:
                await self.units.settle(rec)
            if rec["state"] == lifecycle.DELETED:
                await self.videos.purge(vid)
            else:
                keep = layout.out_prefix(vid, rec["ready_epoch"]) if rec["state"] == lifecycle.READY else None
                for info in await self.store.list_all(layout.out_prefix(vid)):
                    if keep is None or not info.key.startswith(keep):
                        await self.store.delete(info.key)
            if self.clock() - rec.get("updated_at", 0.0) > 2 * self.cfg.timing.lease_seconds:
                await self.store.delete(layout.pending_key(vid))
        except storage.StorageError as e:
            log.warning("cleanup_failed", video=vid, epoch=rec.get("epoch"), error=str(e))

    async def _discard_outputs(self, job: Job, why: str) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(30):
                try:
                    v = await self.videos.get(job.video)
                    if v is not None and v.doc.get("ready_epoch") == job.epoch:
                        return  # Invariant: never delete what the record names
                    if v is not None and v.doc["state"] == lifecycle.DELETED:
                        await self.videos.purge(job.video)  # also what units wrote meanwhile
                        log.info("attempt_discarded", video=job.video, epoch=job.epoch,
                                 reason=f"{why}; video deleted")
                        return
                    n = await self.store.delete_prefix(layout.out_prefix(job.video, job.epoch))
                    log.info("attempt_discarded", video=job.video, epoch=job.epoch, reason=why, objects=n)
                except storage.StorageError as e:
                    log.warning("cleanup_failed", video=job.video, epoch=job.epoch, error=str(e))

    async def _fail(self, job: Job, err: UndecodableInput | MediaLimitExceeded) -> None:
        f = classify(err)
        log.warning("input_refused", video=job.video, epoch=job.epoch, code=f.code,
                    limit=getattr(err, "limit", None), error=f.message)
        await self.fail_video(job, f.code, f.message)

    async def fail_video(self, job: Job, code: str, message: str, **fields: Any) -> None:
        """Make the video `failed` (fenced by the job's epoch), then collect its garbage."""
        try:
            rec = await self.videos.change(job.video, lambda r: lifecycle.fail(
                r, self.node_id, job.epoch, self.clock(), code, message), **fields)
            self.stats.failures += 1
            await self._settle(rec)
        except Refused as e:
            log.warning("commit_lost", video=job.video, epoch=job.epoch, reason=e.message)

    async def _release(self, job: Job, err: BaseException) -> None:
        p = self.cfg.processing
        f = classify(err)
        code, message = f.code, f.message
        delay = lifecycle.backoff(job.attempts, p.backoff_base, p.backoff_max, self._rng)
        detail = f"{type(err).__name__}: {err}"[:500]  # private: the log may hold paths, stderr
        log.warning("attempt_failed", video=job.video, epoch=job.epoch, error=detail,
                    stderr=getattr(err, "stderr_tail", "")[-1000:] or None, retry_in=round(delay, 2))
        self.stats.retries += 1
        await self._discard_outputs(job, "attempt failed")
        with trio.CancelScope(shield=True):
            with trio.move_on_after(15):
                try:
                    await self.videos.change(job.video, lambda r: lifecycle.release_for_retry(
                        r, self.node_id, job.epoch, self.clock(), code, message, delay=delay))
                except (Refused, storage.StorageError) as e:
                    # storage down or lease gone: the lease simply expires and anyone retries
                    log.warning("release_failed", video=job.video, epoch=job.epoch, error=str(e))

