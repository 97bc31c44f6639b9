"""storage.multipart.StreamingUpload against the in-memory store: parts opened at their first
byte when the size is known, pieces never joined, sha256 in order, memory bounded, every error
path aborting its writers and the multipart upload."""

import hashlib
import os

import pytest
import trio

import storage
from storage.multipart import next_part_size
from storage.store import BufferedPartWriter

PS = 5 * 1024 * 1024


class Recording(storage.MemoryStore):
    """Records each part writer as it is opened (when, of which size), and can hold answers."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[tuple[int, int, BufferedPartWriter]] = []  # (number, size, writer)
        self.aborted: list[int] = []
        self.gate: trio.Event | None = None  # upload_part waits for it when set
        self.fail_part: int | None = None

    def part_writer(self, key, upload_id, number, size, **kw):
        w = super().part_writer(key, upload_id, number, size, **kw)
        self.writers.append((number, size, w))
        store = self

        class Watched(type(w)):
            async def abort(self):
                store.aborted.append(number)
                await super().abort()

        w.__class__ = Watched
        return w

    async def upload_part(self, key, upload_id, number, body):
        if self.gate is not None:
            await self.gate.wait()
        if number == self.fail_part:
            raise storage.StorageUnavailable(f"part {number}: injected")
        return await super().upload_part(key, upload_id, number, body)

    def held(self) -> int:
        """Bytes referenced by writers that have not been answered (their parts' memory)."""
        return sum(w.sent for n, _, w in self.writers if n not in self._answered())

    def _answered(self) -> set[int]:
        return {n for _, (_, parts, _) in self.uploads.items() for n in parts}


@pytest.mark.parametrize("total,assigned,buffered,ended,expected", [
    (12, 0, 1, False, 5),     # known size: the first part is opened at its first byte
    (12, 10, 1, False, 2),    # the last part is the rest
    (12, 5, 0, False, 0),     # nothing received for the next part yet
    (10, 5, 3, False, 5),     # exactly two parts
    (None, 0, 4, False, 0),   # unknown size: wait for a whole part
    (None, 0, 7, False, 5),
    (None, 5, 2, True, 2),    # ... or the end
    (None, 5, 0, True, 0),
])
def test_next_part_size(total, assigned, buffered, ended, expected):
    assert next_part_size(total=total, assigned=assigned, buffered=buffered, part_size=5,
                          ended=ended) == expected


async def upload(st, data, *, total, chunk, parts_in_flight=2, key="k"):
    async with storage.StreamingUpload(st, key, part_size=PS, parts_in_flight=parts_in_flight,
                                       total=total) as up:
        for i in range(0, len(data), chunk):
            await up.write(data[i:i + chunk])
        await up.complete(if_none_match=True)
    return up


@pytest.mark.parametrize("size", [1, PS - 1, PS, PS + 1, 2 * PS, 3 * PS + 12345])
@pytest.mark.parametrize("known", [True, False])
async def test_byte_exact_with_the_right_sha256_and_part_sizes(size, known):
    st = Recording()
    data = os.urandom(size)
    up = await upload(st, data, total=size if known else None, chunk=777_777)
    assert st.objects["k"][0] == data
    assert up.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    full, rest = divmod(size, PS)
    assert [s for _, s, _ in st.writers] == [PS] * full + ([rest] if rest else [])
    assert [n for n, _, _ in st.writers] == list(range(1, len(st.writers) + 1))
    assert st.uploads == {} and st.aborted == []


async def test_a_known_size_opens_each_part_at_its_first_byte_and_keeps_pieces_as_they_came():
    st = Recording()
    st.gate = trio.Event()  # no part is answered: what is open shows
    async with storage.StreamingUpload(st, "k", part_size=PS, total=2 * PS + 10) as up:
        first = b"a" * 1000
        await up.write(first)
        assert [(n, s) for n, s, _ in st.writers] == [(1, PS)]
        await up.write(b"b" * (PS - 1000 + 3))  # crosses into part 2: opened at once
        assert [(n, s) for n, s, _ in st.writers] == [(1, PS), (2, PS)]
        await trio.testing.wait_all_tasks_blocked()
        w1 = st.writers[0][2]
        assert w1.chunks[0] is first  # not joined, not copied
        assert isinstance(w1.chunks[1], memoryview) and len(w1.chunks[1]) == PS - 1000
        st.gate.set()
        await up.write(b"c" * (PS + 7))
        await up.complete()
    assert [(n, s) for n, s, _ in st.writers] == [(1, PS), (2, PS), (3, 10)]
    assert st.objects["k"][0] == b"a" * 1000 + b"b" * (PS - 997) + b"c" * (PS + 7)


@pytest.mark.parametrize("known", [True, False])
async def test_memory_is_bounded_by_the_parts_in_flight(known):
    """With storage not answering, writes stop (backpressure) once parts_in_flight parts are open
    (+ the object's last one): no more than (parts_in_flight + 1) * part_size is held."""
    st = Recording()
    st.gate = trio.Event()
    total = 6 * PS
    written = 0
    async with trio.open_nursery() as n:
        async def feed():
            nonlocal written
            async with storage.StreamingUpload(st, "k", part_size=PS, parts_in_flight=2,
                                               total=total if known else None) as up:
                while written < total:
                    await up.write(bytes(PS // 4))
                    written += PS // 4
                await up.complete()

        n.start_soon(feed)
        await trio.testing.wait_all_tasks_blocked()
        assert written <= 3 * PS + PS // 4
        assert st.held() <= 3 * PS
        peak = st.held()
        st.gate.set()
    assert peak >= 2 * PS  # the bound was reached, not trivially met
    assert len(st.objects["k"][0]) == total


async def test_a_failed_part_aborts_every_open_writer_and_the_upload():
    st = Recording()
    st.fail_part = 2
    with pytest.raises(storage.StorageUnavailable, match="part 2"):
        await upload(st, os.urandom(4 * PS), total=4 * PS, chunk=PS // 3)
    assert "k" not in st.objects and st.uploads == {}
    assert st.calls[-1] == "abort_multipart"


@pytest.mark.parametrize("known", [True, False])
async def test_a_body_cut_short_leaves_no_object_and_no_upload(known):
    st = Recording()
    with pytest.raises(RuntimeError, match="client went away"):
        async with storage.StreamingUpload(st, "k", part_size=PS, total=3 * PS if known else None) as up:
            await up.write(os.urandom(PS + PS // 2))
            raise RuntimeError("client went away")
    assert "k" not in st.objects and st.uploads == {}
    if known:  # part 2 was open mid-body: its writer was aborted
        assert 2 in st.aborted


async def test_complete_refuses_a_size_other_than_announced_and_write_refuses_overflow():
    st = Recording()
    with pytest.raises(storage.StorageError, match="ended after 10 of 11"):
        async with storage.StreamingUpload(st, "k", part_size=PS, total=11) as up:
            await up.write(b"x" * 10)
            await up.complete()
    assert "k" not in st.objects and st.uploads == {}
    with pytest.raises(storage.StorageError, match="more than the announced 11"):
        async with storage.StreamingUpload(st, "k", part_size=PS, total=11) as up:
            await up.write(b"x" * 10)
            await up.write(b"yz")
    assert "k" not in st.objects and st.uploads == {}
    assert [(s, w.sent <= 10) for _, s, w in st.writers] == [(11, True)] * 2  # no overflow reached a writer


@pytest.mark.parametrize("known", [True, False])
async def test_an_empty_object_is_a_plain_put(known):
    st = Recording()
    up = await upload(st, b"", total=0 if known else None, chunk=1)
    assert st.objects["k"][0] == b"" and st.uploads == {} and st.writers == []
    assert up.sha256.hexdigest() == hashlib.sha256(b"").hexdigest()
    assert ("create_multipart" in st.calls) is not known  # a known empty object starts none


async def test_leaving_without_complete_keeps_nothing():
    st = Recording()
    with trio.fail_after(5):
        async with storage.StreamingUpload(st, "k", part_size=PS, total=2 * PS) as up:
            await up.write(b"x" * 100)
    assert "k" not in st.objects and st.uploads == {}
