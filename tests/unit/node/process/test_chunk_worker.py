"""The worker on a chunked video, in one process: plan, units, stitch, one `ready` commit.

In-process worker (no gossip: it may claim every unit), in-memory object store, the real
probe child and the real ffmpeg.  The cluster test (tests/cluster/test_chunked_processing.py)
runs the same on three node processes with the real S3 server.
"""

from __future__ import annotations

import io
import json
import time
from msgspec.structs import replace

import trio

import media
import storage
from node import log
from node.chunks import state as cs
from node.chunks.store import ChunkStore
from node.config import Config, NodeSpec, Rendition
from node.process.worker import Worker
from node.records import layout, lifecycle
from node.records.store import VideoStore
from test_worker_lease_expiry import PartitionedStore, uploaded_video  # a store whose calls hang while cut

LADDER = (Rendition("54p", 54, 80, 32), Rendition("90p", 90, 150, 48))


def config(chunked: bool = True) -> Config:
    cfg = Config(nodes=(NodeSpec("n1", "127.0.0.1", 1, 2),), ladder=LADDER).local()
    return replace(cfg, processing=replace(cfg.processing, chunked=chunked, chunk_segments=3,
                                           preset="ultrafast"))


async def run_until_terminal(tmp_path, source: bytes, cfg: Config, timeout: float = 120):
    store = storage.MemoryStore()
    videos = VideoStore(store, "n1")
    vid = await uploaded_video(videos, source)
    worker = Worker(videos, cfg, "n1", tmp_path / "work")
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            while (rec := (await videos.get(vid)).doc)["state"] not in lifecycle.TERMINAL:
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    return store, vid, rec


async def test_a_long_video_is_planned_in_chunks_and_committed_ready_once(tmp_path, monkeypatch):
    lines = io.StringIO()
    monkeypatch.setattr(log, "_stream", lines)
    src = media.make_video(tmp_path / "src.mp4", seconds=24, width=160, height=90, fps=10)
    # given chunking on with chunks of 3 two-second segments, when the worker runs
    store, vid, rec = await run_until_terminal(tmp_path, src.read_bytes(), config())
    # then the video is ready once, and its record names every unit's committed epoch
    assert rec["state"] == "ready", rec.get("error")
    assert [h["state"] for h in rec["history"]] == ["uploaded", "processing", "ready"]
    units = ["00000", "00001", "00002", "00003", "audio"]
    assert rec["segments_from"] == {"chunk_segments": 3, "chunks": 4, "units": {u: 1 for u in units}}
    assert [(c["unit"], c["index"], c["start"], c["state"], c["node"], c["epoch"]) for c in rec["chunks"]] == [
        ("00000", 0, 0.0, "committed", "n1", 1), ("00001", 1, 6.0, "committed", "n1", 1),
        ("00002", 2, 12.0, "committed", "n1", 1), ("00003", 3, 18.0, "committed", "n1", 1),
        ("audio", None, 0.0, "committed", "n1", 1)]
    assert rec["progress"] == 1.0 and lifecycle.public_view(rec)["chunks"] == rec["chunks"]
    # and every HLS path the playlists name exists where playback looks for it
    master = (await store.get(layout.out_prefix(vid, 1) + "master.m3u8"))[0].decode()
    assert 'TYPE=AUDIO' in master
    for name in ("54p", "90p", "audio"):
        playlist = (await store.get(layout.hls_object_key(vid, rec, f"{name}/index.m3u8")))[0].decode()
        segs = [ln for ln in playlist.splitlines() if ln.endswith(".ts")]
        assert len(segs) == 12 if name != "audio" else len(segs) in (12, 13)  # + a priming tail
        for seg in segs:
            await store.head(layout.hls_object_key(vid, rec, f"{name}/{seg}"))
    # and the log tells each unit's claim and commit, one line each
    events = [json.loads(x) for x in lines.getvalue().splitlines()]
    claimed = sorted(e["unit"] for e in events if e["event"] == "chunk_claimed")
    committed = sorted(e["unit"] for e in events if e["event"] == "chunk_committed")
    assert claimed == committed == units
    assert [e["event"] for e in events].count("video_committed") == 1


async def test_a_short_video_stays_on_the_whole_video_path(tmp_path):
    src = media.make_video(tmp_path / "src.mp4", seconds=8, width=160, height=90, fps=10)
    store, vid, rec = await run_until_terminal(tmp_path, src.read_bytes(), config())
    assert rec["state"] == "ready" and "plan" not in rec and "segments_from" not in rec
    assert await store.list_all(layout.units_prefix(vid)) == []


async def test_an_undecodable_chunk_fails_the_video_without_retries(tmp_path):
    # given a source whose bytes after its first third are zeros (the probe reads its head)
    src = media.make_video(tmp_path / "src.mp4", seconds=24, width=160, height=90, fps=10,
                           audio=False)
    data = bytearray(src.read_bytes())
    data[len(data) // 3:] = bytes(len(data) - len(data) // 3)
    store, vid, rec = await run_until_terminal(tmp_path, bytes(data), config())
    # then the video fails at once with the public reason of the damaged chunk: no retries
    assert rec["state"] == "failed"
    assert rec["error"]["code"] == "undecodable_input"
    assert rec["error"]["message"].startswith("input cannot be decoded: the video cannot be decoded between ")
    units = await ChunkStore(store, "n1").units(vid)
    failed = [u for u in units if u["state"] == cs.FAILED]
    assert failed and all(u["attempts"] == 1 and u["failures"] == 0 for u in failed)
    assert rec["attempts"] == 1


async def test_a_plan_of_a_newer_format_is_left_alone(tmp_path):
    # given a processing video whose record carries a plan of a format this node does not know
    store = storage.MemoryStore()
    videos = VideoStore(store, "n1")
    vid = layout.new_id(time.time())
    rec = lifecycle.new_record(vid, "n1", 0.0, state=lifecycle.UPLOADED, filename=None, size=1)
    rec = lifecycle.claim(rec, "n9", 0.0, 6.0, max_attempts=5)  # its holder's lease ran out long ago
    rec["plan"] = {"format": 99}
    await store.put(layout.pending_key(vid), b"")
    await storage.cas.create(store, layout.record_key(vid), rec)
    worker = Worker(videos, config(), "n1", tmp_path / "work")
    # when the worker scans twice
    await worker.scan_once()
    await worker.scan_once()
    # then the record is as it was: not claimed, not released, not failed
    assert (await videos.get(vid)).doc == rec and worker.stats.claims == 0


def test_the_owners_summary_spares_the_unit_reads_only_when_nothing_is_claimable():
    from node.process.chunk_worker import nothing_to_claim

    alive = {"n1", "n2"}.__contains__
    done = {"unit": "00000", "state": "committed", "node": "n1"}
    held = {"unit": "00001", "state": "claimed", "node": "n2", "lease_expires": 50.0}
    assert nothing_to_claim([done, held], 10.0, alive)
    assert not nothing_to_claim(None, 10.0, alive) and not nothing_to_claim([], 10.0, alive)
    assert not nothing_to_claim([done, held], 60.0, alive)  # the lease ran out
    assert not nothing_to_claim([done, dict(held, node="n3")], 10.0, alive)  # the holder is dead
    assert not nothing_to_claim([done, dict(held, state="pending")], 10.0, alive)


class FlakyChunkPuts(storage.MemoryStore):
    """Storage that is out of reach for the first ``n`` segment uploads of unit 00001."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.failing = n

    async def put(self, key: str, body: bytes, **kw):
        if "/chunks/00001/" in key and self.failing > 0:
            self.failing -= 1
            raise storage.StorageUnavailable(f"put {key}: injected outage")
        return await super().put(key, body, **kw)


async def test_a_storage_outage_mid_unit_releases_it_with_backoff_and_it_is_redone(tmp_path):
    src = media.make_video(tmp_path / "src.mp4", seconds=24, width=160, height=90, fps=10)
    store = FlakyChunkPuts(3)
    videos = VideoStore(store, "n1")
    vid = await uploaded_video(videos, src.read_bytes(), size=1)
    worker = Worker(videos, config(), "n1", tmp_path / "work")
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            while (rec := (await videos.get(vid)).doc)["state"] not in lifecycle.TERMINAL:
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    # then the video is ready once; unit 00001 was released once (a failure, with backoff) and
    # redone at epoch 2, and its failed attempt left nothing behind
    assert rec["state"] == "ready" and [h["state"] for h in rec["history"]].count("ready") == 1
    unit = (await ChunkStore(store, "n1").get(vid, "00001")).doc
    assert (unit["state"], unit["epoch"], unit["failures"]) == ("committed", 2, 1)
    released = [h for h in unit["history"] if h["state"] == "pending" and h.get("error")]
    assert released and released[0]["error"] == "storage_error" and released[0]["retry_in"] > 0
    assert rec["segments_from"]["units"]["00001"] == 2
    assert await store.list_all(layout.chunk_out_prefix(vid, "00001", 1)) == []



async def test_a_unit_holder_cut_from_storage_stops_once_the_units_lease_ended(tmp_path):
    lease = 1.5
    cfg = config()
    cfg = replace(cfg, timing=replace(cfg.timing, lease_seconds=lease),
                  processing=replace(cfg.processing, preset="veryslow"))
    src = media.make_video(tmp_path / "src.mp4", seconds=24, width=160, height=90, fps=10)
    store = PartitionedStore()
    videos = VideoStore(store, "n1")
    vid = await uploaded_video(videos, src.read_bytes(), size=1)
    worker = Worker(videos, cfg, "n1", tmp_path / "work")
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            # given a unit being encoded
            while not any(k.startswith(vid + "/") and j.phase == "transcoding"
                          for k, j in list(worker.stats.jobs.items())):
                await trio.sleep(0.01)
            # when storage stops answering, then the unit's attempt stops within its lease plus
            # one bounded renewal period
            await store.cut_until(lambda: worker.stats.units_lost > 0, lease)
            # and once storage answers again, the video is made and committed ready once
            store.healed.set()
            while (rec := (await videos.get(vid)).doc)["state"] not in lifecycle.TERMINAL:
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert rec["state"] == "ready" and [h["state"] for h in rec["history"]].count("ready") == 1
    for unit, epoch in rec["segments_from"]["units"].items():
        for stale in range(1, epoch):  # an epoch the unit did not commit left nothing behind
            assert await store.list_all(layout.chunk_out_prefix(vid, unit, stale)) == []


class EveryOtherNodeDead:
    """The claim policy of a node whose gossip sees every other node dead (cut off from them)."""

    def holder_alive(self, holder: str) -> bool:
        return False

    def should_claim(self, vid, rec, *, now, deferring, in_flight) -> bool:
        return True

    def should_claim_unit(self, doc, *, now, in_flight, idle, deferring) -> bool:
        return True


async def test_an_owner_that_loses_the_video_while_planning_defers_to_the_taker(tmp_path):
    """The ping-pong of the 10-minute lab run: a node whose plan commit is refused (another node
    took the video meanwhile) counts the taker as alive, whatever its gossip says, and does not
    take the video back until the taker's lease expires."""
    lease = 3.0
    cfg = config()
    cfg = replace(cfg, timing=replace(cfg.timing, lease_seconds=lease))
    src = media.make_video(tmp_path / "src.mp4", seconds=24, width=160, height=90, fps=10)
    store = storage.MemoryStore()
    videos = VideoStore(store, "n1")
    vid = await uploaded_video(videos, src.read_bytes(), size=1)
    worker = Worker(videos, cfg, "n1", tmp_path / "work", claim_policy=EveryOtherNodeDead())

    def taken_by_n2(rec):  # n2 took the lease; it last wrote it 0.6 leases ago, and ends in 0.4
        now = time.time()
        new = dict(rec, epoch=rec["epoch"] + 1, attempts=rec["attempts"] + 1,
                   takeovers=rec.get("takeovers", 0) + 1)
        new["lease"] = {"holder": "n2", "expires": now + 0.4 * lease, "renewed": now - 0.6 * lease}
        return new

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            # given n1 planning the video (probing it)
            while not (vid in worker.stats.jobs and worker.stats.jobs[vid].phase == "probing"):
                await trio.sleep(0.005)
            # when n2 takes the video before n1 fixes the plan
            taken = await videos.change(vid, taken_by_n2)
            while worker.stats.leases_lost == 0:
                await trio.sleep(0.01)
            # then n1 defers to n2: its gossip calls n2 dead and n2 is silent in storage for more
            # than half a lease, yet n1 leaves the video to it
            assert worker.deferring(vid)
            # and n1 claims it again only when n2's lease expired, and makes it
            while (rec := (await videos.get(vid)).doc)["state"] not in lifecycle.TERMINAL:
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert rec["state"] == "ready"
    reclaim = next(h for h in rec["history"] if h.get("epoch") == taken["epoch"] + 1)
    assert reclaim["reason"] == "lease expired" and reclaim["at"] >= taken["lease"]["expires"]
