"""node.play.answers and node.play.ranges: which record plays (the memo, with an injected clock),
which epoch a hop may read, and ranges with numbers of any length.  No sockets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import storage
from node import play
from node.play.answers import Unsatisfiable, parse_range
from node.records import layout
from node.records import lifecycle as lc
from node.records.store import VideoStore
from storage.cas import decode, encode

VID = layout.new_id(1_700_000_000)
HUGE = "9" * 5000


# ---- ranges ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header,expect", [
    (None, None), ("bytes=0-99", (0, 99)), ("bytes=-10", (990, 999)), ("bytes=900-", (900, 999)),
    ("bytes=0-1,5-6", None), ("bytes=5-2000", (5, 999)), ("bytes=5-2", None), ("items=0-1", None),
    (f"bytes=0-{HUGE}", (0, 999)),  # a last byte beyond any object: to the end
    (f"bytes=-{HUGE}", (0, 999)),  # a suffix longer than any object: all of it
    (f"bytes=0{HUGE}-", "416"), (f"bytes={HUGE}-", "416"), (f"bytes={HUGE}-{HUGE}", "416"),
    ("bytes=000000000000000000000000000005-9", (5, 9)),  # leading zeros are not a large number
    ("bytes=1000-", "416"), ("bytes=-0", "416"),
    ("bytes=٣-", None),  # not ASCII digits: not a range we understand
    (" bytes=0-1 ", (0, 1)),  # whitespace around a field value is not part of it
])
def test_parse_range(header, expect):
    if expect == "416":
        with pytest.raises(Unsatisfiable):
            parse_range(header, 1000)
    else:
        assert parse_range(header, 1000) == expect


# ---- ids and paths: whole-string matches ----------------------------------------------------------------

def test_ids_and_paths_with_a_trailing_newline_are_not_valid():
    assert layout.valid_id(VID) and not layout.valid_id(VID + "\n")
    assert layout.valid_hls_path("master.m3u8") and not layout.valid_hls_path("master.m3u8\n")
    assert not layout.valid_hls_path("360p/seg_00001.ts\n") and not layout.valid_hls_path("360p/index.m3u8\n")
    assert play.segcache.internal_key(VID, "out/1/master.m3u8\n") is None
    assert play.segcache.internal_key(VID + "\n", "out/1/master.m3u8") is None


# ---- the memo and the epoch of a hop ------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _ctx_with(state: str | None):
    store = storage.MemoryStore()
    ctx = SimpleNamespace(videos=VideoStore(store, "n1"))
    if state is not None:
        rec = lc.new_record(VID, "n1", 0.0, state=lc.UPLOADED, filename="a.mp4", size=10)
        if state == lc.READY:
            rec = lc.commit_ready(lc.claim(rec, "n1", 1.0, 60.0, max_attempts=3), "n1", 1, 2.0, [])
        await store.put(layout.record_key(VID), encode(rec))
    return ctx, store


async def test_the_memo_trusts_a_ready_record_for_one_second_then_reads_again():
    ctx, store = await _ctx_with(lc.READY)
    clock = Clock()
    memo = play.ReadyRecords(clock)
    assert (await memo.current(ctx, VID))["ready_epoch"] == 1
    rec = lc.delete(decode((await store.get(layout.record_key(VID)))[0]), "n1", 3.0)
    await store.put(layout.record_key(VID), encode(rec))
    clock.now = 0.99
    assert (await memo.current(ctx, VID))["state"] == lc.READY  # within the second: the memo
    clock.now = 1.0
    with pytest.raises(play.VideoNotFound):  # then the record again: deleted
        await memo.current(ctx, VID)


@pytest.mark.parametrize("state,error", [(None, play.VideoNotFound), (lc.UPLOADED, play.NotReady)])
async def test_ready_record_raises_domain_errors(state, error):
    ctx, _ = await _ctx_with(state)
    with pytest.raises(error) as e:
        await play.ready_record(ctx, play.ReadyRecords(Clock()), VID)
    if error is play.NotReady:
        assert e.value.state == lc.UPLOADED
    with pytest.raises(play.VideoNotFound):
        await play.ready_record(ctx, play.ReadyRecords(Clock()), "not-an-id")


async def _hop_reads(ctx, rest: str, ok: bool) -> None:
    """A hop asking for ``rest`` of VID reads that key under the video when ``ok``, else is not found."""
    memo = play.ReadyRecords(Clock())
    if ok:
        assert await play.internal_object_key(ctx, memo, VID, rest) == layout.video_prefix(VID) + rest
    else:
        with pytest.raises(play.ObjectNotFound):
            await play.internal_object_key(ctx, memo, VID, rest)


@pytest.mark.parametrize("rest,ok", [
    ("out/1/master.m3u8", True), ("out/1/360p/seg_00001.ts", True),
    ("out/2/master.m3u8", False), ("out/0/master.m3u8", False),  # not the ready epoch
    ("out/01/master.m3u8", False),  # the same number, but not the key the record names
    ("record.json", False), ("source", False), ("out/1/../record.json", False),
])
async def test_a_hop_reads_only_the_ready_epoch(rest, ok):
    ctx, _ = await _ctx_with(lc.READY)
    await _hop_reads(ctx, rest, ok)


@pytest.mark.parametrize("rest,ok", [
    ("out/1/master.m3u8", True), ("out/1/360p/index.m3u8", True),
    ("chunks/00001/3/360p/seg_00004.ts", True),  # chunk 1 (segments 3-5) committed at epoch 3
    ("chunks/00003/2/360p/seg_00011.ts", True),  # the last chunk, committed at epoch 2
    ("chunks/audio/1/audio/seg_00004.ts", True),
    ("chunks/00001/2/360p/seg_00004.ts", False),  # a stale epoch of that chunk
    ("chunks/00000/3/360p/seg_00004.ts", False),  # a chunk that does not hold that segment
    ("out/1/360p/seg_00004.ts", False),  # a chunked video's segments are not under out/
])
async def test_a_hop_to_a_chunked_video_reads_only_committed_unit_epochs(rest, ok):
    ctx, store = await _ctx_with(lc.READY)
    v = await ctx.videos.get(VID)
    rec = dict(v.doc, segments_from={"chunk_segments": 3, "chunks": 4,
                                     "units": {"00000": 1, "00001": 3, "00002": 1, "00003": 2, "audio": 1}})
    await store.put(layout.record_key(VID), encode(rec))
    await _hop_reads(ctx, rest, ok)


@pytest.mark.parametrize("state", [None, lc.UPLOADED])
async def test_a_hop_to_a_video_not_ready_is_not_found(state):
    ctx, _ = await _ctx_with(state)
    with pytest.raises(play.ObjectNotFound):
        await play.internal_object_key(ctx, play.ReadyRecords(Clock()), VID, "out/1/master.m3u8")


async def test_the_memo_keeps_a_ready_record_while_storage_is_unreachable_for_a_bounded_time():
    ctx, store = await _ctx_with(lc.READY)
    clock = Clock()
    memo = play.ReadyRecords(clock)
    assert (await memo.current(ctx, VID))["ready_epoch"] == 1
    store.fail_next = 1
    clock.now = 5.0  # expired, and storage does not answer: the record of 5 s ago still plays
    assert (await memo.current(ctx, VID))["ready_epoch"] == 1
    store.fail_next = 1
    clock.now = play.answers.READY_STALE_IF_UNREACHABLE + 1.0  # too old: the error goes through
    with pytest.raises(storage.StorageUnavailable):
        await memo.current(ctx, VID)
    store.fail_next = 1
    with pytest.raises(storage.StorageUnavailable):  # and it was forgotten
        await memo.current(ctx, VID)


async def test_the_memo_does_not_keep_a_record_when_storage_says_no():
    ctx, store = await _ctx_with(lc.READY)
    clock = Clock()
    memo = play.ReadyRecords(clock)
    await memo.current(ctx, VID)
    await store.delete(layout.record_key(VID))
    clock.now = 2.0
    with pytest.raises(play.VideoNotFound):
        await memo.current(ctx, VID)
