"""storage.store: calls refused at once while the gate is closed, calls in flight cut short when it
closes, nothing changed while it is open.  Over the in-memory store, with trio's mock clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import storage
from storage import GatedStore, MemoryStore, StorageGate, StorageUnavailable


class SilentStore(MemoryStore):
    """A store cut by a partition: ``get`` never answers (until cancelled)."""

    async def get(self, key: str) -> tuple[bytes, str]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_open_gate_passes_every_call_through():
    inner = MemoryStore()
    store = GatedStore(inner, StorageGate())
    etag = await store.put("a", b"1", if_none_match=True)
    assert await store.get("a") == (b"1", etag)
    assert [i.key for i in await store.list("")] == ["a"]
    assert b"".join([c async for c in store.iter_object("a")]) == b"1"
    uid = await store.create_multipart("big")
    w = store.part_writer("big", uid, 1, 3)
    await w.send(b"ab")
    await w.send(b"c")
    assert w.full and w.sent == 3
    part = storage.Part(1, await w.finish(), 3)
    await store.complete_multipart("big", uid, [part])
    assert (await store.get("big"))[0] == b"abc"
    with pytest.raises(storage.PreconditionFailed):  # the inner store's own answers go through
        await store.put("a", b"2", if_none_match=True)


async def test_a_closed_gate_refuses_at_once_without_calling_storage():
    inner = MemoryStore()
    gate = StorageGate()
    store = GatedStore(inner, gate)
    await store.put("a", b"1")
    calls = len(inner.calls)
    gate.mark(False, "no answer within 3 s")
    for call in (store.get("a"), store.list(""), store.put("b", b"2"), store.head("a"),
                 store.create_multipart("c")):
        with pytest.raises(StorageUnavailable, match="no answer within 3 s"):
            await call
    assert len(inner.calls) == calls
    assert gate.refused == 5
    gate.mark(True)
    assert (await store.get("a"))[0] == b"1"


async def test_closing_the_gate_cuts_calls_in_flight_short(autojump_clock):
    gate = StorageGate()
    store = GatedStore(SilentStore(), gate)
    answered: list[tuple[float, str]] = []

    async def request() -> None:
        try:
            await store.get("a")
        except StorageUnavailable as e:
            answered.append((trio.current_time(), str(e)))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(request)
        await trio.sleep(4.0)  # the probe notices after its interval and bound
        gate.mark(False, "no answer within 3 s")
    assert len(answered) == 3
    assert all(t == pytest.approx(4.0) and "became unreachable" in m for t, m in answered)
    assert not gate._in_flight  # every passage left its scope


async def test_an_outer_cancel_is_not_turned_into_a_storage_error(autojump_clock):
    gate = StorageGate()
    store = GatedStore(SilentStore(), gate)
    with trio.move_on_after(1.0) as scope:
        await store.get("a")
    assert scope.cancelled_caught and gate.refused == 0


async def test_a_streamed_read_stops_when_the_gate_closes(autojump_clock):
    inner = MemoryStore()
    gate = StorageGate()
    store = GatedStore(inner, gate)
    await inner.put("a", b"x" * 10)
    chunks = store.iter_object("a", chunk_size=4)
    assert await chunks.__anext__() == b"xxxx"
    gate.mark(False)
    with pytest.raises(StorageUnavailable):
        await chunks.__anext__()
    await chunks.aclose()
