"""TusUploads over the in-memory store: PATCH streaming into parts + tail, locks, checksum,
cancellation salvage, completion, termination, expiry.  Tiny parts (min_part=1) keep it fast."""

from __future__ import annotations

import hashlib
import random

import pytest
import trio

import storage
from node.http.errors import upload_answer
from node.records import VideoStore, layout
from node.upload import tus
from node.upload.errors import UploadRefused
from node.upload.tus_uploads import TusUploads

PART = 16


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(store=None, *, clock=None, part=PART, ttl=6.0, expiry=100.0, alive=lambda _: True):
    store = store or storage.MemoryStore()
    clock = clock or Clock()
    done: list[str] = []
    videos = VideoStore(store, "n1", clock=clock)
    tu = TusUploads(videos, "n1", part_size=part, lock_ttl=ttl, expiry=expiry, min_part=1, clock=clock,
                    alive=alive, on_uploaded=done.append)
    return tu, store, clock, done


async def chunks(data: bytes, size: int = 7):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def sha1(data: bytes) -> tuple[str, bytes]:
    return "sha1", hashlib.sha1(data).digest()


async def status(tu, vid):
    return await tu.status(vid)


async def upload_all(tu, data: bytes, pieces: list[int], *, known_length: bool = False) -> str:
    """PATCHes of ``pieces`` bytes, each with a checksum; ``known_length``: with Content-Length."""
    rec = await tu.create(len(data), {}, "f.mp4")
    vid = rec["id"]
    off = 0
    for n in pieces:
        rec = await tu.patch(vid, offset=off, body=chunks(data[off:off + n]), checksum=sha1(data[off:off + n]),
                             content_length=n if known_length else None)
        off += n
    return vid


def source(store, vid) -> bytes:
    return store.objects[layout.source_key(vid)][0]


def scratch(store, vid) -> list[str]:
    return [k for k in store.objects if k.startswith(tus.tus_prefix(vid))]


@pytest.mark.parametrize("length, pieces", [
    (PART, [PART]),                      # exactly one part
    (PART + 1, [PART + 1]),              # one byte over a part
    (PART + 1, [PART, 1]),
    (5 * PART + 3, [1, 2, 20, 33, 27]),  # pieces that straddle parts and tails
    (3 * PART, [PART - 1, 1, PART, PART]),
    (6 * PART + 5, [2 * PART + 3, PART - 1, 2 * PART + 2, PART + 1]),  # long last parts, tails
])
@pytest.mark.parametrize("known_length", [False, True], ids=["chunked", "content-length"])
async def test_upload_in_pieces_assembles_the_exact_bytes(length, pieces, known_length):
    tu, store, _, done = make()
    data = random.Random(length).randbytes(length)
    assert sum(pieces) == length
    vid = await upload_all(tu, data, pieces, known_length=known_length)
    rec = await tu.get(vid)
    assert rec["state"] == "uploaded" and rec["size"] == length and rec["upload"] is None
    assert source(store, vid) == data
    assert scratch(store, vid) == [] and store.uploads == {}
    assert done == [vid]
    assert await status(tu, vid) == (length, length, rec)


async def test_zero_bytes_is_uploaded_at_creation():
    tu, store, _, done = make()
    rec = await tu.create(0, {}, None)
    assert rec["state"] == "uploaded" and source(store, rec["id"]) == b"" and done == [rec["id"]]
    assert store.uploads == {}


async def test_durable_offset_covers_tail_bytes():
    tu, store, _, _ = make()
    data = random.Random(1).randbytes(40)
    rec = await tu.create(40, {}, None)
    vid = rec["id"]
    rec = await tu.patch(vid, offset=0, body=chunks(data[:21]))
    up = rec["upload"]
    assert up["offset"] == 21 and len(up["parts"]) == 1 and up["tail"]["size"] == 5
    assert store.objects[up["tail"]["key"]][0] == data[16:21]
    rec = await tu.patch(vid, offset=21, body=chunks(data[21:30]))
    assert rec["upload"]["tail"]["size"] == 14 and len(scratch(store, vid)) == 1  # the old tail is gone


async def test_known_length_patch_is_parts_only_and_no_record_read():
    """With Content-Length a PATCH of 2.5 parts is two parts (the second longer), no tail; the
    node CASes the record from the version it wrote last: lock and advance are one PUT each."""
    tu, store, _, _ = make()
    data = random.Random(7).randbytes(6 * PART)
    vid = (await tu.create(len(data), {}, None))["id"]
    n = PART * 5 // 2
    rec = await tu.patch(vid, offset=0, body=chunks(data[:n]), checksum=sha1(data[:n]), content_length=n)
    up = rec["upload"]
    assert up["offset"] == n and [p["size"] for p in up["parts"]] == [PART, n - PART] and up["tail"] is None
    store.calls.clear()
    rec = await tu.patch(vid, offset=n, body=chunks(data[n:2 * n]), checksum=sha1(data[n:2 * n]),
                         content_length=n)
    assert store.calls == ["put", "upload_part", "upload_part", "put"] and scratch(store, vid) == []
    assert [p["n"] for p in rec["upload"]["parts"]] == [1, 2, 3, 4]
    assert await tu.get(vid) == rec
    await tu.patch(vid, offset=2 * n, body=chunks(data[2 * n:]), content_length=len(data) - 2 * n)
    assert source(store, vid) == data


class GatedTails(storage.MemoryStore):
    """Reads of tail objects wait for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()

    async def get(self, key: str):
        if "/tus/tail-" in key:
            await self.gate.wait()
        return await super().get(key)


async def test_body_received_while_locking_goes_after_the_old_tail():
    """The body is received while the lock is taken and the old tail read; parts are cut only
    once the tail is in front of it, however late the tail arrives."""
    store = GatedTails()
    clock = Clock()
    videos = VideoStore(store, "n1", clock=clock)
    tu = TusUploads(videos, "n1", part_size=PART, lock_ttl=6.0, expiry=100.0, min_part=PART, clock=clock)
    data = random.Random(9).randbytes(4 * PART)
    vid = (await tu.create(len(data), {}, None))["id"]
    await tu.patch(vid, offset=0, body=chunks(data[:5]), content_length=5)  # a tail of 5

    async def trickle(piece: bytes):
        for i in range(0, len(piece), 4):
            yield piece[i:i + 4]
            await trio.sleep(0)

    async def open_gate_when_stuck():
        await trio.testing.wait_all_tasks_blocked()
        store.gate.set()

    async with trio.open_nursery() as n:
        n.start_soon(open_gate_when_stuck)
        rec = await tu.patch(vid, offset=5, body=trickle(data[5:40]), checksum=sha1(data[5:40]),
                             content_length=35)
    assert rec["upload"]["offset"] == 40 and [p["size"] for p in rec["upload"]["parts"]] == [PART, 24]
    await tu.patch(vid, offset=40, body=chunks(data[40:]), content_length=len(data) - 40)
    assert source(store, vid) == data


async def test_a_part_replaced_after_its_patch_is_not_assembled():
    """A late upload of a recorded part number (a PATCH that lost its lock) is caught at the end."""
    tu, store, _, done = make()
    data = random.Random(10).randbytes(3 * PART)
    vid = (await tu.create(len(data), {}, None))["id"]
    await tu.patch(vid, offset=0, body=chunks(data[:2 * PART]), content_length=2 * PART)
    up = (await tu.get(vid))["upload"]
    await store.upload_part(layout.source_key(vid), up["upload_id"], 1, b"z" * PART)  # the late writer
    with pytest.raises(storage.StorageError, match="staged parts"):
        await tu.patch(vid, offset=2 * PART, body=chunks(data[2 * PART:]), content_length=PART)
    assert layout.source_key(vid) not in store.objects and done == []
    assert await tu.expire() == 0  # the scan logs it and goes on


async def test_late_parts_of_a_stalled_lock_are_left_out():
    """Fencing: a PATCH stalled past its lock's expiry (its parts still on their way to S3) and the
    PATCH that took over write different part numbers, so the late parts are simply left out."""
    tu, store, clock, done = make()
    data = random.Random(13).randbytes(3 * PART)
    vid = (await tu.create(len(data), {}, None))["id"]
    await tu._change(vid, lambda r: tus.take_lock(r, holder="n9", request="stalled", offset=0,
                                                  now=clock(), ttl=6.0, body_length=2 * PART))
    clock.t += 6.0
    await tu.patch(vid, offset=0, body=chunks(data[:2 * PART]), content_length=2 * PART)
    up = (await tu.get(vid))["upload"]
    assert [p["n"] for p in up["parts"]] == [3, 4]  # not the stalled lock's 1 and 2
    for n in (1, 2):  # the stalled lock's numbers: its late uploads land after the takeover
        await store.upload_part(layout.source_key(vid), up["upload_id"], n, b"z" * PART)
    await tu.patch(vid, offset=2 * PART, body=chunks(data[2 * PART:]), content_length=PART)
    assert source(store, vid) == data and done == [vid]


async def test_remembered_record_versions_are_bounded(monkeypatch):
    """Records this node wrote are kept for the next CAS, within a count and a number of parts."""
    import node.upload.tus_uploads as ts
    monkeypatch.setattr(ts, "KNOWN_RECORDS", 3)
    monkeypatch.setattr(ts, "KNOWN_PARTS", 4)
    tu, store, _, _ = make()
    data = random.Random(11).randbytes(4 * PART)
    vids = [(await tu.create(len(data), {}, None))["id"] for _ in range(5)]
    for vid in vids:
        await tu.patch(vid, offset=0, body=chunks(data[:PART]), content_length=PART)  # 1 part each
    assert list(tu._last_written) == vids[-3:]
    await tu.patch(vids[-1], offset=PART, body=chunks(data[PART:3 * PART]), content_length=2 * PART)
    assert list(tu._last_written) == vids[-2:]  # 1 + 3 parts: the oldest went
    store.calls.clear()  # the remembered one still needs no read
    await tu.patch(vids[-1], offset=3 * PART, body=chunks(data[3 * PART:]), content_length=PART)
    assert store.calls[:2] == ["put", "upload_part"]


async def test_two_nodes_take_turns_on_one_upload():
    """Each node remembers the record version it wrote; when the other node moved the upload on,
    its If-Match fails and it decides again on a fresh read."""
    store = storage.MemoryStore()
    a, _, _, _ = make(store)
    b, _, _, _ = make(store)
    data = random.Random(8).randbytes(5 * PART + 7)
    vid = (await a.create(len(data), {}, None))["id"]
    cuts = [0, 20, 41, 60, 75, len(data)]
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        tu = (a, b)[i % 2]
        await tu.patch(vid, offset=lo, body=chunks(data[lo:hi]), checksum=sha1(data[lo:hi]),
                       content_length=hi - lo)
    with pytest.raises(UploadRefused) as ei:  # a's remembered version is stale: the offset moved on
        await a.patch(vid, offset=20, body=chunks(b"x" * 5), content_length=5)
    assert upload_answer(ei.value) == (409, "offset_mismatch")
    assert source(store, vid) == data


@pytest.mark.parametrize("given, when, then", [
    ("wrong offset", dict(offset=3), (409, "offset_mismatch")),
    ("bad checksum", dict(checksum=("sha1", bytes(20))), (460, "checksum_mismatch")),
    ("beyond Upload-Length", dict(extra=b"x" * 30), (413, "beyond_upload_length")),
])
async def test_refused_patch_changes_nothing(given, when, then):
    tu, store, _, _ = make()
    data = random.Random(2).randbytes(50)
    vid = await upload_all(tu, data, [20])  # offset 20: one part and a tail of 4
    before = await tu.get(vid)
    body = data[20:45] + when.get("extra", b"")
    with pytest.raises(UploadRefused) as ei:
        await tu.patch(vid, offset=when.get("offset", 20), body=chunks(body), checksum=when.get("checksum"))
    assert upload_answer(ei.value) == then, given
    after = await tu.get(vid)
    # offset, parts, tail and (released) lock as they were; only the refused PATCH's part numbers
    # are gone (fencing: the next PATCH uses new ones)
    assert {**after["upload"], "reserved": None} == {**before["upload"], "reserved": None}
    assert after["upload"]["reserved"] >= before["upload"]["reserved"]
    # and the upload continues normally: the refused PATCH's staged parts are left out
    await tu.patch(vid, offset=20, body=chunks(data[20:]), checksum=sha1(data[20:]))
    assert source(store, vid) == data


async def test_two_patches_at_once_one_gets_409():
    tu, store, _, _ = make()
    data = random.Random(3).randbytes(64)
    vid = (await tu.create(64, {}, None))["id"]
    gate = trio.Event()

    async def slow_body():
        yield data[:10]
        await gate.wait()
        yield data[10:32]

    results = {}

    async def first():
        results["first"] = await tu.patch(vid, offset=0, body=slow_body())

    async with trio.open_nursery() as n:
        n.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(UploadRefused) as ei:
            await tu.patch(vid, offset=0, body=chunks(b"y" * 32))
        assert upload_answer(ei.value) == (409, "upload_locked")
        gate.set()
    assert results["first"]["upload"]["offset"] == 32
    await tu.patch(vid, offset=32, body=chunks(data[32:]))
    assert source(store, vid) == data  # no "y" interleaved


async def test_stale_lock_of_a_dead_patch_is_taken_over():
    tu, store, clock, _ = make()
    data = random.Random(4).randbytes(30)
    vid = (await tu.create(30, {}, None))["id"]
    # a PATCH on a node that then died: the lock stays in the record
    await tu._change(vid, lambda r: tus.take_lock(r, holder="n9", request="dead", offset=0, now=clock(), ttl=6.0))
    with pytest.raises(UploadRefused) as ei:
        await tu.patch(vid, offset=0, body=chunks(data))
    assert upload_answer(ei.value) == (409, "upload_locked")
    clock.t += 6.0
    await tu.patch(vid, offset=0, body=chunks(data))
    assert source(store, vid) == data


async def patch_cut_off(tu, vid: str, pieces: list[bytes], **patch_kw) -> None:
    """A PATCH at offset 0 whose client sends ``pieces``, then goes away while the node waits for
    more (the node has taken in all it was sent)."""
    got_here = trio.Event()

    async def body_then_hang():
        for piece in pieces:
            yield piece
        got_here.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as n:
        n.start_soon(lambda: tu.patch(vid, offset=0, body=body_then_hang(), **patch_kw))
        await got_here.wait()
        await trio.testing.wait_all_tasks_blocked()
        n.cancel_scope.cancel()  # the client went away


@pytest.mark.parametrize("content_length", [None, 100])
async def test_cut_off_patch_keeps_what_it_received(content_length):
    tu, store, _, _ = make()
    data = random.Random(5).randbytes(100)
    vid = (await tu.create(100, {}, None))["id"]
    await patch_cut_off(tu, vid, [data[i:i + 9] for i in range(0, 45, 9)], content_length=content_length)
    rec = await tu.get(vid)
    assert rec["upload"]["offset"] == 45 and rec["upload"]["lock"] is None
    assert [p["size"] for p in rec["upload"]["parts"]] == [PART, PART] and rec["upload"]["tail"]["size"] == 13
    await tu.patch(vid, offset=45, body=chunks(data[45:]))
    assert source(store, vid) == data


async def test_cut_off_patch_with_checksum_keeps_nothing():
    tu, store, _, _ = make()
    data = random.Random(6).randbytes(100)
    vid = (await tu.create(100, {}, None))["id"]
    await patch_cut_off(tu, vid, [data[:40]], checksum=sha1(data))
    rec = await tu.get(vid)
    assert rec["upload"]["offset"] == 0 and rec["upload"]["lock"] is None and scratch(store, vid) == []


async def test_crash_before_completion_is_finished_by_head():
    tu, store, _, done = make()
    data = random.Random(7).randbytes(40)
    vid = (await tu.create(40, {}, None))["id"]
    real = store.complete_multipart

    async def broken(*a, **kw):
        raise storage.StorageUnavailable("injected")

    store.complete_multipart = broken
    with pytest.raises(storage.StorageUnavailable):
        await tu.patch(vid, offset=0, body=chunks(data))
    rec = await tu.get(vid)
    assert rec["state"] == "uploading" and rec["upload"]["offset"] == 40 and done == []
    store.complete_multipart = real
    off, length, rec = await tu.status(vid)
    assert (off, length, rec["state"]) == (40, 40, "uploaded") and source(store, vid) == data
    assert done == [vid]


async def test_terminate_frees_everything_and_answers_410():
    tu, store, _, _ = make()
    data = random.Random(8).randbytes(50)
    vid = await upload_all(tu, data, [20])
    await tu.terminate(vid)
    assert store.uploads == {} and [k for k in store.objects if k.startswith(f"videos/{vid}/")] == \
        [layout.record_key(vid)]
    for call in (tu.status(vid), tu.patch(vid, offset=20, body=chunks(b"x")), tu.terminate(vid)):
        with pytest.raises(UploadRefused) as ei:
            await call
        assert upload_answer(ei.value) == (410, "gone")


async def test_expiry_reclaims_idle_uploads_only():
    tu, store, clock, _ = make(expiry=100.0)
    idle = await upload_all(tu, random.Random(9).randbytes(50), [20])
    clock.t += 50
    busy = await upload_all(tu, random.Random(10).randbytes(50), [20])
    clock.t += 60  # idle: 110 s since its PATCH; busy: 60 s
    assert await tu.expire() == 1
    assert (await tu.get(idle))["state"] == "deleted" and (await tu.get(idle))["history"][-1]["reason"] == "expired"
    assert (await tu.get(busy))["state"] == "uploading"
    assert [u for u in store.uploads.values() if u[0] == layout.source_key(idle)] == []
    assert scratch(store, idle) == []


async def test_orphan_multipart_uploads_are_aborted_after_grace():
    tu, store, clock, _ = make()
    live = await upload_all(tu, random.Random(11).randbytes(50), [20])
    orphan_id = await store.create_multipart(layout.source_key(layout.new_id()))
    # the memory store stamps uploads with the real time: look from far enough ahead
    clock.t = max(u[2] for u in store.uploads.values()) + 1000
    assert await tu.collect_orphan_multiparts(grace=500) == 1
    assert orphan_id not in store.uploads
    assert (await tu.get(live))["upload"]["upload_id"] in store.uploads
