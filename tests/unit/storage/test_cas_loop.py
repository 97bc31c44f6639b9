"""The compare-and-swap loop and the worker's commit rules, over the in-memory store (no I/O)."""

import pytest
import trio

import storage
from storage import cas
from node.records import lifecycle as lc
from node.records.store import VideoStore

KEY = "videos/x/record.json"


async def test_update_rereads_and_decides_again_after_a_lost_race():
    st = storage.MemoryStore()
    await cas.create(st, KEY, {"n": 0})
    seen = []

    def decide(doc):
        seen.append(doc["n"])
        return {"n": doc["n"] + 1}

    # a competing writer sneaks in between our read and our write, once
    real_put = st.put
    raced = []

    async def racing_put(key, body, **kw):
        if not raced and kw.get("if_match"):
            raced.append(1)
            cur, etag = await st.get(key)
            await real_put(key, cas.encode({"n": 100}), if_match=etag)
        return await real_put(key, body, **kw)

    st.put = racing_put
    v, wrote = await cas.update(st, KEY, decide)
    assert wrote and v.doc == {"n": 101}
    assert seen == [0, 100]  # decided again on the newer version


async def test_keep_writes_nothing():
    st = storage.MemoryStore()
    await cas.create(st, KEY, {"n": 0})
    v, wrote = await cas.update(st, KEY, lambda d: storage.Keep("no change"))
    assert not wrote and v.doc == {"n": 0}


async def test_update_is_bounded():
    st = storage.MemoryStore()
    await cas.create(st, KEY, {"n": 0})

    async def always_lose(key, body, **kw):
        raise storage.PreconditionFailed(key)

    st.put = always_lose
    with pytest.raises(cas.CasExhausted):
        await cas.update(st, KEY, lambda d: {"n": 1}, attempts=3)


async def test_racing_claims_have_exactly_one_winner():
    st = storage.MemoryStore()
    vs = [VideoStore(st, f"n{i}", part_size=5 << 20, clock=lambda: 0.0) for i in range(5)]
    rec = lc.new_record("a" * 26, "n0", 0.0, state=lc.UPLOADED, filename=None, size=1)
    await vs[0].create(rec)
    winners = []

    async def try_claim(v):
        try:
            await v.change(rec["id"], lambda r: lc.claim(r, v.node_id, 0.0, 10.0, max_attempts=3))
            winners.append(v.node_id)
        except lc.Refused:
            pass

    async with trio.open_nursery() as n:
        for v in vs:
            n.start_soon(try_claim, v)
    assert len(winners) == 1
    final = (await vs[0].get(rec["id"])).doc
    assert final["epoch"] == 1 and final["lease"]["holder"] == winners[0]


async def test_one_shot_ingest_streams_and_rejects_short_bodies_without_a_video():
    st = storage.MemoryStore()
    vs = VideoStore(st, "n1", part_size=5 << 20)

    async def body(chunks):
        for c in chunks:
            yield c

    from node.records.store import UploadError
    with pytest.raises(UploadError) as e:
        await vs.ingest(body([b"abc"]), content_length=10, filename=None, idempotency_key=None)
    assert e.value.code == "body_too_short"
    with pytest.raises(UploadError) as e:
        await vs.ingest(body([b"abc", b"defgh"]), content_length=5, filename=None, idempotency_key=None)
    assert e.value.code == "body_too_long"
    assert not [k for k in st.objects if k.startswith(("videos/", "catalog/", "pending/"))]
    assert st.uploads == {}  # multipart uploads aborted
    res = await vs.ingest(body([b"x" * 7]), content_length=7, filename="f", idempotency_key="k1")
    again = await vs.ingest(body([b"x" * 7]), content_length=7, filename="f", idempotency_key="k1")
    assert res.created and not again.created and again.record["id"] == res.record["id"]
    assert len([k for k in st.objects if k.endswith("record.json")]) == 1
