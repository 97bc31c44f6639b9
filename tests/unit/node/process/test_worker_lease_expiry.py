"""A holder that cannot reach storage stops its attempt once its lease has ended.

In-process worker, the in-memory object store, the real probe child and the real ffmpeg.  The
store "partitions" like a network cut (every call hangs, none fails) while the worker is
processing; the renewal tries are bounded, so the attempt is cancelled within a lease and one
renewal period and never commits; once storage answers, a new epoch commits, the only commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from msgspec.structs import replace

import trio

import media
import storage
from node.config import Config, NodeSpec, Rendition
from node.process.worker import Worker
from node.records import layout, lifecycle
from node.records.store import VideoStore

LEASE = 1.5
LADDER = (Rendition("64p", 64, 100, 32), Rendition("120p", 120, 200, 48))


class PartitionedStore(storage.MemoryStore):
    """Every call waits while ``cut`` (a dropped packet never fails; it just never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = False
        self.healed = trio.Event()

    async def _op(self, name: str) -> None:
        if self.cut:
            await self.healed.wait()
        await super()._op(name)

    async def cut_until(self, stopped: Callable[[], bool], lease: float) -> None:
        """Stops answering, and waits until ``stopped()``: asserts that came within ``lease``
        plus one renewal period (2/3 of a lease) and its bound."""
        self.cut = True
        t_cut = trio.current_time()
        while not stopped():
            await trio.sleep(0.05)
        stopped_after = trio.current_time() - t_cut
        assert stopped_after <= lease + 2 * lease / 3 + 0.5, stopped_after


async def uploaded_video(videos: VideoStore, source: bytes, *, size: int | None = None) -> str:
    """A new video whose ``source`` is stored and whose record is ``uploaded``: its id."""
    vid = layout.new_id(time.time())
    await videos.store.put(layout.source_key(vid), source)
    await videos.create(lifecycle.new_record(vid, "n1", time.time(), state=lifecycle.UPLOADED,
                                             filename="upload", size=len(source) if size is None else size))
    return vid


async def test_a_holder_cut_from_storage_stops_once_its_lease_ended_and_never_commits(tmp_path):
    # given a worker processing a video
    cfg = Config(nodes=(NodeSpec("n1", "127.0.0.1", 1, 2),), ladder=LADDER).local()
    cfg = replace(cfg, timing=replace(cfg.timing, lease_seconds=LEASE))
    store = PartitionedStore()
    videos = VideoStore(store, "n1")
    src = media.make_video(tmp_path / "v.mp4", seconds=4, width=160, height=120)
    vid = await uploaded_video(videos, src.read_bytes())
    worker = Worker(videos, cfg, "n1", tmp_path / "work")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            while not (vid in worker.stats.jobs and worker.stats.jobs[vid].phase == "transcoding"):
                await trio.sleep(0.01)
            # when storage stops answering mid-transcode, then the attempt was cancelled: within
            # the lease plus one renewal period and its bound
            await store.cut_until(lambda: worker.stats.leases_lost > 0, LEASE)
            assert worker.stats.commits == 0
            # when storage answers again, the video is claimed anew (a higher epoch) and committed
            store.healed.set()
            while (await videos.get(vid)).doc["state"] != lifecycle.READY:
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    rec = (await videos.get(vid)).doc
    readies = [h for h in rec["history"] if h["state"] == lifecycle.READY]
    assert rec["ready_epoch"] == rec["epoch"] >= 2 and len(readies) == 1, rec["history"]
    assert worker.stats.commits == 1
    assert not await store.list_all(layout.out_prefix(vid, 1))  # the stopped attempt's outputs
