"""The compare-and-swap loop (with and without a remembered version) and the worker's commit
rules, over the in-memory store (no I/O)."""

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
    vs = [VideoStore(st, f"n{i}", clock=lambda: 0.0) for i in range(5)]
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


def add_one(doc):
    if doc["n"] < 0:
        raise ValueError("refused")
    return {"n": doc["n"] + 1}


@pytest.mark.parametrize("given, remembered, current, decide, then_doc, then_calls", [
    ("the remembered version is current: one write, no read",
     "same", {"n": 1}, add_one, {"n": 2}, ["put"]),
    ("someone wrote since: the write loses, read and decide again",
     "stale", {"n": 5}, add_one, {"n": 6}, ["put", "get", "put"]),
    ("decide refuses the remembered version: decided again on a fresh read, which it accepts",
     "refused", {"n": 5}, add_one, {"n": 6}, ["get", "put"]),
    ("Keep on the remembered version is not trusted: read, and Keep again writes nothing",
     "same", {"n": 1}, lambda d: storage.Keep("no"), {"n": 1}, ["get"]),
])
async def test_update_from_a_remembered_version(given, remembered, current, decide, then_doc, then_calls):
    st = storage.MemoryStore()  # it records its calls
    first = await cas.create(st, KEY, {"n": 1})
    known = {"same": first, "stale": first, "refused": cas.Versioned({"n": -1}, first.etag)}[remembered]
    if current != {"n": 1}:
        await st.put(KEY, cas.encode(current), if_match=first.etag)
    st.calls.clear()
    v, wrote = await cas.update(st, KEY, decide, known=known)
    assert st.calls == then_calls, given
    assert v.doc == then_doc and (await cas.read(st, KEY)).doc == then_doc, given
    assert wrote == (then_doc != current), given


async def test_a_refusal_on_a_fresh_read_propagates():
    st = storage.MemoryStore()  # it records its calls
    first = await cas.create(st, KEY, {"n": -1})
    with pytest.raises(ValueError, match="refused"):
        await cas.update(st, KEY, add_one, known=first)
    assert (await cas.read(st, KEY)).doc == {"n": -1}
