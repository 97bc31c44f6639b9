"""Units in storage: created once, claimed by CAS (one winner), commits fenced by epoch, outputs
of stale epochs never listed and collected; the video record fixes the plan once."""

from __future__ import annotations

import io
import json
import uuid

import pytest
import trio

import storage
from conftest import open_test_store
from node import log
from node.chunks import state as cs
from node.chunks.plan import make_plan
from node.chunks.store import ChunkStore, UnsupportedChunk, plan_units, unit_weights
from node.records import layout, lifecycle
from node.records.lifecycle import Refused

VID = "b" * 26
RUNGS = [{"name": "144p", "width": 256, "height": 144, "video_kbps": 200, "audio_kbps": 64}]
LEASE = 10.0


def plan(has_audio=True):
    return make_plan(duration=24.0, segment_seconds=2, chunk_segments=3, chunked=True,
                     renditions=RUNGS, has_audio=has_audio, preset="veryfast", made_by_epoch=1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged(monkeypatch):
    lines = io.StringIO()
    monkeypatch.setattr(log, "_stream", lines)
    return lambda: [json.loads(x) for x in lines.getvalue().splitlines()]


async def test_units_are_created_once_and_a_successor_keeps_what_exists():
    mem, clock = storage.MemoryStore(), Clock()
    chunks = ChunkStore(mem, "n1", clock=clock)
    # given an owner created the units and one was claimed since
    docs = await chunks.create_units(VID, plan())
    assert [d["unit"] for d in docs] == plan_units(plan()) == ["00000", "00001", "00002", "00003", "audio"]
    await chunks.change(VID, "00002", lambda d: cs.claim(d, "n2", clock(), LEASE, max_attempts=3))
    # when a successor owner creates them again
    again = await ChunkStore(mem, "n3", clock=clock).create_units(VID, plan())
    # then nothing was reset
    assert [d["state"] for d in again] == ["pending", "pending", "claimed", "pending", "pending"]
    assert [d["unit"] for d in await chunks.units(VID)] == plan_units(plan())
    assert unit_weights(plan()) == {"00000": 6.0, "00001": 6.0, "00002": 6.0, "00003": 6.0,
                                    "audio": pytest.approx(0.48)}


async def test_a_takeover_logs_lost_then_claimed_and_the_stale_commit_is_refused(logged):
    mem, clock = storage.MemoryStore(), Clock()
    n1, n2 = ChunkStore(mem, "n1", clock=clock), ChunkStore(mem, "n2", clock=clock)
    await n1.create_units(VID, plan(has_audio=False))
    v1 = await n1.change(VID, "00001", lambda d: cs.claim(d, "n1", clock(), LEASE, max_attempts=3))
    # n1 renews with the version it knows: one request, no read
    mem.calls.clear()
    v1 = await n1.change(VID, "00001", lambda d: cs.renew(d, "n1", 1, clock(), LEASE, progress=0.4),
                         known=v1)
    assert mem.calls == ["put"]
    # when n1's lease runs out and n2 takes the chunk
    clock.now += LEASE + 1
    await n2.change(VID, "00001", lambda d: cs.claim(d, "n2", clock(), LEASE, max_attempts=3))
    # then n1's commit of epoch 1, even on the version it knew, is refused after a fresh read
    with pytest.raises(Refused, match="epoch moved on"):
        await n1.change(VID, "00001", lambda d: cs.commit(d, "n1", 1, clock(), {}), known=v1)
    done = await n2.change(VID, "00001", lambda d: cs.commit(d, "n2", 2, clock(), {"durations": [2.0] * 3}))
    assert done.doc["output"]["epoch"] == 2
    events = [(r["event"], r.get("unit"), r.get("epoch"), r.get("holder")) for r in logged()]
    assert events == [("chunk_claimed", "00001", 1, None), ("chunk_lost", "00001", 1, "n1"),
                      ("chunk_claimed", "00001", 2, None), ("chunk_committed", "00001", 2, None)]


async def test_only_the_committed_epoch_is_listed_and_stale_epochs_are_collected():
    mem, clock = storage.MemoryStore(), Clock()
    chunks = ChunkStore(mem, "n1", clock=clock)
    await chunks.create_units(VID, plan(has_audio=False))
    # given unit 0 was attempted at epochs 1 (lost) and 2 (committed), unit 1 is in flight at 2
    for unit, epochs in (("00000", (1, 2)), ("00001", (1, 2))):
        for e in epochs:
            await chunks.put_output(VID, unit, e, "144p/seg_00000.ts", b"ts")
    for unit in ("00000", "00001"):
        for holder in ("n1", "n2"):
            clock.now += LEASE + 1
            await chunks.change(VID, unit, lambda d, h=holder: cs.claim(d, h, clock(), LEASE, max_attempts=3))
    await chunks.change(VID, "00000", lambda d: cs.commit(d, "n2", 2, clock(), {}))
    docs = await chunks.units(VID)
    # then the committed unit lists its committed epoch only
    assert await chunks.committed_outputs(docs[0]) == [
        layout.chunk_out_prefix(VID, "00000", 2) + "144p/seg_00000.ts"]
    with pytest.raises(ValueError):
        await chunks.committed_outputs(docs[1])
    # and collection deletes both epoch-1 attempts but never the in-flight epoch 2
    assert await chunks.collect_stale(VID, docs) == 2
    left = sorted(i.key for i in await mem.list_all(layout.chunk_out_prefix(VID)))
    assert left == [layout.chunk_out_prefix(VID, u, 2) + "144p/seg_00000.ts" for u in ("00000", "00001")]


@pytest.mark.parametrize("state_name, epoch, stale", [
    ("committed", 2, False), ("committed", 1, True), ("committed", 3, True),
    ("claimed", 2, False), ("claimed", 1, True), ("pending", 2, True), ("failed", 2, True),
])
def test_which_epochs_are_garbage(state_name, epoch, stale):
    doc = {"state": state_name, "epoch": 2, "output": {"epoch": 2}}
    assert cs.stale_epoch(doc, epoch) is stale


async def test_a_unit_of_a_newer_format_is_left_alone():
    mem = storage.MemoryStore()
    chunks = ChunkStore(mem, "n1")
    doc = cs.new_chunk(VID, "00000", 1, 0.0)
    await storage.cas.create(mem, layout.unit_doc_key(VID, "00000"), dict(doc, format=99))
    with pytest.raises(UnsupportedChunk):
        await chunks.change(VID, "00000", lambda d: cs.claim(d, "n1", 1.0, LEASE, max_attempts=3))
    with pytest.raises(UnsupportedChunk):
        await chunks.units(VID)


def test_the_record_fixes_the_plan_once_and_only_from_the_current_epoch():
    rec = lifecycle.new_record(VID, "n1", 0.0, state="uploaded", filename=None, size=1)
    rec = lifecycle.claim(rec, "n1", 1.0, LEASE, max_attempts=3)
    with pytest.raises(Refused):
        lifecycle.attach_plan(rec, "n2", 1, plan().to_doc())
    with_plan = lifecycle.attach_plan(rec, "n1", 1, plan().to_doc())
    with pytest.raises(Refused, match="fixed"):
        lifecycle.attach_plan(with_plan, "n1", 1, plan().to_doc())
    noted = lifecycle.note_chunks(with_plan, "n1", 1, 2.0, LEASE, [{"index": 0}], 0.25)
    assert noted["progress"] == 0.25 and noted["lease"]["expires"] == 12.0
    assert noted["history"] == with_plan["history"]  # not a state change


@pytest.mark.parametrize("real", [False, True], ids=["memory", "s3"])
async def test_three_nodes_racing_for_one_unit_make_exactly_one_claim(real, request):
    async def race(store: storage.ObjectStore) -> None:
        await ChunkStore(store, "n0").create_units(VID, plan())
        won: list[str] = []

        async def claimer(node: str) -> None:
            try:
                await ChunkStore(store, node).change(
                    VID, "00003", lambda d: cs.claim(d, node, 1.0, LEASE, max_attempts=3))
                won.append(node)
            except Refused:
                pass

        async with trio.open_nursery() as n:
            for node in ("n1", "n2", "n3"):
                n.start_soon(claimer, node)
        doc = (await ChunkStore(store, "n0").get(VID, "00003")).doc
        assert len(won) == 1 and doc["lease"]["holder"] == won[0] and doc["epoch"] == 1

    if not real:
        await race(storage.MemoryStore())
        return
    async with open_test_store(request.getfixturevalue("s3_server"), "chunks-" + uuid.uuid4().hex[:8]) as st:
        await race(st)
