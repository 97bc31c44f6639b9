"""The checker finds each kind of anomaly in synthetic histories over a MemoryStore.

Given a clean run (one valid video uploaded, committed at epoch 2, its playlists served after the
commit; one invalid video failed), the checker passes; each test then breaks one thing the way a
bug would, and the checker names exactly that anomaly and that video.
"""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from cli.chaos import ANOMALY_KINDS, check, id_time, plan_faults, read_snapshot, PROFILES
from cli.chaos.checker import Snapshot
from node.records import layout
from storage import MemoryStore

T0 = 1_800_000_000.0
SOURCE = b"\x00\x00\x00\x18ftypmp42 a valid video, pretend" * 10
JUNK = b"random bytes" * 50
V = layout.new_id(T0 + 1)
X = layout.new_id(T0 + 2)
MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n144p/index.m3u8\n"
MEDIA = "#EXTM3U\n#EXTINF:2.0,\nseg_00000.ts\n#EXTINF:2.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def record(vid: str, states: list[tuple[str, float, int]], **kw) -> dict:
    last = states[-1]
    rec = {"id": vid, "state": last[0], "epoch": max(e for _, _, e in states), "lease": None,
           "attempts": 2, "ready_epoch": None, "filename": kw.pop("filename", None),
           "history": [{"state": s, "at": at, "node": "n1", "epoch": e} for s, at, e in states]}
    rec.update(kw)
    return rec


def clean() -> tuple[list[dict], dict[str, bytes], dict[str, tuple]]:
    """(history, objects, multipart uploads) of a run where everything went right."""
    history = [
        {"op": "run", "t0": T0, "seed": 1, "duration": 60, "name_prefix": "chaos-1-x"},
        {"op": "upload", "kind": "oneshot", "t0": T0 + 1, "t1": T0 + 2, "node": "n1", "video": V, "ids": [V],
         "result": "ok", "valid": True, "name": "chaos-1-x-1.mp4", "key": "chaos-1-x-1.mp4",
         "size": len(SOURCE), "sha256": sha(SOURCE)},
        {"op": "upload", "kind": "tus", "t0": T0 + 2, "t1": T0 + 3, "node": "n2", "video": X, "ids": [X],
         "result": "ok", "valid": False, "name": "chaos-1-x-2.bin", "size": len(JUNK), "sha256": sha(JUNK)},
        {"op": "fault", "kind": "kill", "node": "n1", "t0": T0 + 4, "t1": T0 + 6},
        {"op": "poll", "t0": T0 + 5, "t1": T0 + 5.1, "node": "n2", "video": V, "status": 200, "state": "processing"},
        {"op": "playlist", "t0": T0 + 5, "t1": T0 + 5.1, "node": "n2", "video": V, "path": "master.m3u8",
         "status": 409},
        {"op": "poll", "t0": T0 + 11, "t1": T0 + 11.1, "node": "n3", "video": V, "status": 200, "state": "ready"},
        {"op": "playlist", "t0": T0 + 12, "t1": T0 + 12.1, "node": "n3", "video": V, "path": "master.m3u8",
         "status": 200, "sha256": sha(MASTER.encode()), "variants": [{"name": "144p/index.m3u8", "status": 200}]},
        {"op": "playlist", "t0": T0 + 12, "t1": T0 + 12.1, "node": "n2", "video": V, "path": "144p/index.m3u8",
         "status": 200, "sha256": sha(MEDIA.encode()),
         "segments": [{"name": "seg_00000.ts", "status": 200, "node": "n1"},
                      {"name": "seg_00001.ts", "status": 200, "node": "n3"}]},
        {"op": "poll", "t0": T0 + 13, "t1": T0 + 13.1, "node": "n1", "video": V, "status": 200, "state": "ready"},
    ]
    rv = record(V, [("uploaded", T0 + 1.5, 0), ("processing", T0 + 3, 1), ("processing", T0 + 7, 2),
                    ("ready", T0 + 10, 2)], ready_epoch=2, filename="chaos-1-x-1.mp4")
    rx = record(X, [("uploading", T0 + 2, 0), ("uploaded", T0 + 3, 0), ("processing", T0 + 4, 1),
                    ("failed", T0 + 5, 1)], filename="chaos-1-x-2.bin")
    objects = {
        f"videos/{V}/record.json": json.dumps(rv).encode(), f"videos/{V}/source": SOURCE,
        f"videos/{V}/out/2/master.m3u8": MASTER.encode(), f"videos/{V}/out/2/144p/index.m3u8": MEDIA.encode(),
        f"videos/{V}/out/2/144p/seg_00000.ts": b"ts0", f"videos/{V}/out/2/144p/seg_00001.ts": b"ts1",
        f"videos/{X}/record.json": json.dumps(rx).encode(), f"videos/{X}/source": JUNK,
        f"catalog/{V}": b"", f"catalog/{X}": b"",
    }
    return history, objects, {}


async def run_check(history: list[dict], objects: dict[str, bytes], multiparts: dict | None = None,
                    **kw):
    store = MemoryStore()
    for k, body in objects.items():
        await store.put(k, body)
    for uid, key in (multiparts or {}).items():
        store.uploads[uid] = (key, {}, T0)
    snap = await read_snapshot(store, history)
    return check(history, snap, **kw)


def edit_record(objects: dict[str, bytes], vid: str, fn) -> None:
    key = f"videos/{vid}/record.json"
    rec = json.loads(objects[key])
    fn(rec)
    objects[key] = json.dumps(rec).encode()


def kinds(report) -> list[tuple[str, str | None]]:
    return sorted({(a.kind, a.video) for a in report.anomalies})


async def test_a_clean_run_passes_with_its_figures():
    history, objects, _ = clean()
    report = await run_check(history, objects)
    assert report.ok, report.anomalies
    f = report.figures
    assert f["uploads_acknowledged"] == 2 and f["uploads_acknowledged_valid"] == 1
    assert f["videos"] == {"ready": 1, "failed": 1}
    assert f["faults"] == {"kill": 1}
    assert f["segments_checked"] == 2
    assert f["last_fault_to_all_settled"] == 4.0  # ready at +10, last fault healed at +6


async def test_lost_upload_missing_source():
    history, objects, _ = clean()
    del objects[f"videos/{V}/source"]
    assert kinds(await run_check(history, objects)) == [("lost_upload", V)]


async def test_lost_upload_wrong_bytes_and_missing_record():
    history, objects, _ = clean()
    objects[f"videos/{V}/source"] = SOURCE[:-1]
    del objects[f"videos/{X}/record.json"]
    assert kinds(await run_check(history, objects)) == [("lost_upload", V), ("lost_upload", X)]


async def test_double_commit_ready_twice():
    history, objects, _ = clean()
    edit_record(objects, V, lambda r: r["history"].append({"state": "ready", "at": T0 + 11, "node": "n2",
                                                           "epoch": 2}))
    assert kinds(await run_check(history, objects)) == [("ready_twice", V)]


async def test_double_commit_two_outputs_served():
    history, objects, _ = clean()
    other = dict(history[-2], sha256=sha(b"another output"), t0=T0 + 14, t1=T0 + 14.1)
    history.append(other)
    assert kinds(await run_check(history, objects)) == [("double_commit", V)]


async def test_double_commit_ready_entry_names_another_epoch():
    history, objects, _ = clean()
    edit_record(objects, V, lambda r: r.update(ready_epoch=1))
    objects[f"videos/{V}/out/1/master.m3u8"] = objects.pop(f"videos/{V}/out/2/master.m3u8")
    found = {k for k, _ in kinds(await run_check(history, objects))}
    assert "double_commit" in found


async def test_premature_playlist():
    history, objects, _ = clean()
    early = dict(history[7], t0=T0 + 9.0, t1=T0 + 9.1)  # ready committed at +10
    history.insert(7, early)
    report = await run_check(history, objects)
    assert kinds(report) == [("premature_playlist", V)]
    assert "ready committed at" in report.anomalies[0].detail


async def test_playlist_served_for_a_video_that_never_committed():
    history, objects, _ = clean()
    history.append({"op": "playlist", "t0": T0 + 20, "t1": T0 + 20.1, "node": "n1", "video": X,
                    "path": "master.m3u8", "status": 200, "sha256": "ab", "variants": []})
    assert kinds(await run_check(history, objects)) == [("premature_playlist", X)]


async def test_playlist_naming_a_segment_that_answered_404():
    history, objects, _ = clean()
    history[8]["segments"][1]["status"] = 404
    report = await run_check(history, objects)
    assert kinds(report) == [("missing_segment", V)]
    assert "seg_00001.ts" in report.anomalies[0].detail


async def test_playlist_naming_a_segment_absent_from_storage():
    history, objects, _ = clean()
    del objects[f"videos/{V}/out/2/144p/seg_00000.ts"]
    report = await run_check(history, objects)
    assert kinds(report) == [("missing_segment", V)]
    assert "144p/seg_00000.ts" in report.anomalies[0].detail


async def test_master_naming_a_missing_media_playlist():
    history, objects, _ = clean()
    history[7]["variants"][0]["status"] = 404
    assert kinds(await run_check(history, objects)) == [("missing_segment", V)]


async def test_idempotency_split_and_duplicate_video():
    history, objects, _ = clean()
    twin = layout.new_id(T0 + 2.5)
    history[1]["ids"] = [V, twin]
    rt = record(twin, [("uploaded", T0 + 2.5, 0), ("processing", T0 + 3, 1), ("ready", T0 + 4, 1)],
                ready_epoch=1, filename="chaos-1-x-1.mp4")
    objects[f"videos/{twin}/record.json"] = json.dumps(rt).encode()
    objects[f"videos/{twin}/source"] = SOURCE
    objects[f"videos/{twin}/out/1/master.m3u8"] = b"m"
    objects[f"catalog/{twin}"] = b""
    found = kinds(await run_check(history, objects))
    assert ("idempotency_split", min(V, twin)) in found
    assert ("duplicate_video", min(V, twin)) in found


async def test_state_regression():
    history, objects, _ = clean()
    history.append({"op": "poll", "t0": T0 + 14, "t1": T0 + 14.1, "node": "n2", "video": V, "status": 200,
                    "state": "processing"})
    assert kinds(await run_check(history, objects)) == [("state_regression", V)]


async def test_wrong_outcome_and_unsettled():
    history, objects, _ = clean()
    edit_record(objects, X, lambda r: r.update(state="processing", history=r["history"][:-1]))
    report = await run_check(history, objects, settle_bound=3.0)  # V ready 4 s after the last fault
    assert kinds(report) == [("unsettled", V), ("unsettled", X)]
    history2, objects2, _ = clean()
    edit_record(objects2, V, lambda r: r.update(state="failed", ready_epoch=None, history=r["history"][:-1] + [
        {"state": "failed", "at": T0 + 10, "node": "n1", "epoch": 2}]))
    history2 = [e for e in history2 if e.get("op") != "playlist" or e.get("status") != 200]
    for k in [k for k in objects2 if "/out/" in k]:
        del objects2[k]
    assert kinds(await run_check(history2, objects2)) == [("wrong_outcome", V)]


async def test_orphan_attempt_and_orphan_multipart():
    history, objects, _ = clean()
    objects[f"videos/{V}/out/1/144p/seg_00000.ts"] = b"stale attempt"
    report = await run_check(history, objects, {"mp9": f"videos/{X}/source"})
    assert kinds(report) == [("orphan_attempt", V), ("orphan_multipart", X)]
    # a multipart upload its uploading record names is no orphan
    edit_record(objects, X, lambda r: r.update(state="uploading", upload={"upload_id": "mp9"}))
    del objects[f"videos/{V}/out/1/144p/seg_00000.ts"]
    report = await run_check(history, objects, {"mp9": f"videos/{X}/source"})
    assert ("orphan_multipart", X) not in kinds(report)


def chunked(objects: dict[str, bytes]) -> None:
    """Make V a video ready in chunks: 2 chunks of one segment each; unit 00001 redone at epoch 2."""
    edit_record(objects, V, lambda r: r.update(segments_from={
        "chunk_segments": 1, "chunks": 2, "units": {"00000": 1, "00001": 2}}))
    for k in [k for k in objects if "/out/2/144p/seg_" in k]:
        del objects[k]
    objects[f"videos/{V}/chunks/00000/1/144p/seg_00000.ts"] = b"ts0"
    objects[f"videos/{V}/chunks/00001/2/144p/seg_00001.ts"] = b"ts1"
    for unit, epoch in (("00000", 1), ("00001", 2)):
        objects[f"videos/{V}/units/{unit}.json"] = json.dumps(
            {"unit": unit, "state": "committed", "epoch": epoch, "output": {"epoch": epoch}}).encode()


async def test_a_video_ready_in_chunks_reads_its_segments_from_its_committed_unit_epochs():
    history, objects, _ = clean()
    chunked(objects)
    report = await run_check(history, objects)
    assert report.ok, report.anomalies
    assert report.figures["videos_ready_in_chunks"] == 1
    # a segment missing where the record says (its unit's committed epoch) is missing
    del objects[f"videos/{V}/chunks/00001/2/144p/seg_00001.ts"]
    objects[f"videos/{V}/chunks/00001/1/144p/seg_00001.ts"] = b"ts1 of a stale epoch"
    assert kinds(await run_check(history, objects)) == [("missing_segment", V), ("orphan_chunk_attempt", V)]


async def test_chunk_not_committed_and_orphan_chunk_attempt():
    history, objects, _ = clean()
    chunked(objects)
    # the record names epoch 2 of unit 00001, its document committed epoch 3
    objects[f"videos/{V}/units/00001.json"] = json.dumps(
        {"unit": "00001", "state": "committed", "epoch": 3, "output": {"epoch": 3}}).encode()
    objects[f"videos/{V}/chunks/00000/3/144p/seg_00000.ts"] = b"a stale epoch's leftovers"
    report = await run_check(history, objects)
    assert kinds(report) == [("chunk_not_committed", V), ("orphan_chunk_attempt", V)]
    assert "chunks/00000/3/ holds 1 objects" in next(
        a.detail for a in report.anomalies if a.kind == "orphan_chunk_attempt")


async def test_membership_split_after_the_faults():
    history, objects, _ = clean()
    history.append({"op": "members", "t0": T0 + 30, "seconds": 24.0, "converged": True,
                    "views": {"n1": {"n1": "alive", "n2": "alive"}}})
    report = await run_check(history, objects)
    assert report.ok and report.figures["membership_converged_after"] == 24.0
    history.append({"op": "members", "t0": T0 + 30, "seconds": 120.0, "converged": False,
                    "views": {"n1": {"n1": "alive", "n2": "dead"}, "n2": {"n1": "alive", "n2": "alive"}}})
    report = await run_check(history, objects)
    assert kinds(report) == [("membership_split", None)]
    assert "n1 sees n2 dead" in report.anomalies[0].detail


async def test_every_kind_has_a_test_here():
    import inspect, sys
    text = inspect.getsource(sys.modules[__name__])
    assert all(f'("{k}"' in text for k in ANOMALY_KINDS)


def test_id_time_reads_the_creation_time():
    assert id_time(layout.new_id(T0 + 12.345)) == pytest.approx(T0 + 12.345, abs=0.001)
    assert id_time("not an id!") is None


@pytest.mark.parametrize("seed", [1, 7, 99])
def test_fault_plan_is_seeded_bounded_and_never_downs_two_nodes(seed):
    nodes = ["n1", "n2", "n3"]
    plan = plan_faults(seed, nodes, 600, PROFILES["long"])
    assert plan == plan_faults(seed, nodes, 600, PROFILES["long"])
    assert all(f.at + f.hold < 600 for f in plan)
    kills = sorted((f for f in plan if f.kind in ("kill", "pause")), key=lambda f: f.at)
    for a, b in zip(kills, kills[1:]):  # one node down or frozen at a time
        assert b.at >= a.at + a.hold + 20.0
    storage = [f for f in plan if f.kind == "storage"]
    assert storage and all(10.0 <= f.hold <= 30.0 for f in storage)
    assert {f.kind for f in plan} >= {"kill", "storage"}
