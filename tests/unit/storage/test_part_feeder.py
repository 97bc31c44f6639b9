"""storage.multipart: HeldBytes (received bytes not in a part yet) and the PartFeeder both upload
paths use, over the in-memory store: parts opened at their first byte, at most parts_in_flight open
but the last, the checksum in order without the unhashed lead, a failure ending the feeding with
every byte kept, a part left unfilled cut off alone."""

import hashlib

import pytest
import trio
import trio.testing

import storage
from storage.multipart import HeldBytes, PartFeeder, skip_bytes

KEY = "k"


# ---- HeldBytes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("given, lead, chunks, takes, parts, hashed", [
    ("whole chunks", b"", [b"abc", b"def"], [3, 3], [b"abc", b"def"], [b"abc", b"def"]),
    ("a part across chunks", b"", [b"ab", b"cd", b"ef"], [3, 3], [b"abc", b"def"], [b"abc", b"def"]),
    ("the unhashed lead first", b"TT", [b"abc"], [4, 1], [b"TTab", b"c"], [b"ab", b"c"]),
    ("a lead longer than a part", b"TTTT", [b"ab"], [3, 3], [b"TTT", b"Tab"], [b"", b"ab"]),
])
def test_held_bytes_take_parts_in_order_and_tell_hashed_bytes(given, lead, chunks, takes, parts, hashed):
    held = HeldBytes()
    for c in chunks:
        held.add(c)
    if lead:
        held.put_first_unhashed(lead)  # a tus PATCH's old tail may arrive after the first body chunks
    assert held.size == len(lead) + sum(map(len, chunks))
    got = [held.take(n) for n in takes]
    assert [d for d, _ in got] == parts and [bytes(b) for _, b in got] == hashed, given
    assert all(isinstance(d, bytes) for d, _ in got) and held.size == 0


def test_held_bytes_hashed_rest_skips_the_lead():
    held = HeldBytes()
    held.add(b"xyz")
    held.put_first_unhashed(b"TTT")
    held.add(b"w")
    assert b"".join(held.hashed_rest()) == b"xyzw" and held.size == 7
    data, hashed = held.take(4)
    assert (data, bytes(hashed)) == (b"TTTx", b"x") and b"".join(held.hashed_rest()) == b"yzw"


def test_held_bytes_pieces_without_copies_and_put_back():
    held = HeldBytes()
    first = b"abc"
    held.add(first)
    held.add(b"defg")
    held.put_first_unhashed(b"TT")
    pieces, unhashed = held.take_pieces(4)
    assert [bytes(p) for p in pieces] == [b"TT", b"ab"] and unhashed == 2
    assert [bytes(v) for v in skip_bytes(pieces, unhashed)] == [b"ab"]
    assert held.size == 5 and held.unhashed == 0
    more, unhashed2 = held.take_pieces(3)
    assert [bytes(p) for p in more] == [b"c", b"de"] and unhashed2 == 0
    held.put_back(pieces + more, 2)  # the part could not be finished: its bytes are cut again
    assert held.size == 9 and held.unhashed == 2
    data, hashed = held.take(9)
    assert data == b"TTabcdefg" and bytes(hashed) == b"abcdefg"


# ---- PartFeeder ---------------------------------------------------------------------------------

class Gated(storage.MemoryStore):
    """Holds every part's answer until ``gate`` is set; ``fail_part`` answers StorageUnavailable."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.fail_part: int | None = None
        self.opened: list[int] = []

    def part_writer(self, key, upload_id, number, size, **kw):
        self.opened.append(number)
        return super().part_writer(key, upload_id, number, size, **kw)

    async def upload_part(self, key, upload_id, number, body):
        await self.gate.wait()
        if number == self.fail_part:
            raise storage.StorageUnavailable(f"part {number}: injected")
        return await super().upload_part(key, upload_id, number, body)


async def feeder_over(st, *, parts_in_flight=2, hasher=None):
    uid = await st.create_multipart(KEY)
    return PartFeeder(lambda n, size: st.part_writer(KEY, uid, n, size), parts_in_flight=parts_in_flight,
                      hasher=hasher), uid


def numbers():
    count = iter(range(1, 10_001))
    return lambda: next(count)


async def test_parts_in_flight_bound_all_but_the_last_part_and_hash_in_order_without_the_lead():
    st = Gated()
    sha = hashlib.sha256()
    feeder, uid = await feeder_over(st, parts_in_flight=2, hasher=sha)
    held = HeldBytes()
    held.put_first_unhashed(b"TAIL")
    take = numbers()
    opened = []
    async with trio.open_nursery() as n:
        async def feed():
            async with feeder:
                for i in range(4):  # parts of 10 bytes; the 4th is the last
                    held.add(bytes([65 + i]) * (10 if i else 6))
                    await feeder.open_part(10, held, last=i == 3, next_number=take)
                    opened.append(i + 1)

        n.start_soon(feed)
        await trio.testing.wait_all_tasks_blocked()
        # given no answers yet: two parts open, the third waits for a slot
        assert opened == [1, 2] and st.opened == [1, 2]
        st.gate.set()
    assert sorted(feeder.done) == [1, 2, 3, 4] and feeder.open == {} and feeder.error is None
    await st.complete_multipart(KEY, uid, [feeder.done[k] for k in sorted(feeder.done)])
    body = st.objects[KEY][0]
    assert body == b"TAIL" + b"A" * 6 + b"B" * 10 + b"C" * 10 + b"D" * 10
    assert sha.digest() == hashlib.sha256(body[4:]).digest()  # the lead is not hashed


async def test_the_last_part_opens_without_a_slot():
    st = Gated()
    feeder, _ = await feeder_over(st, parts_in_flight=1)
    held = HeldBytes()
    take = numbers()
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            async def feed():
                async with feeder:
                    held.add(b"a" * 5)
                    await feeder.open_part(5, held, last=False, next_number=take)
                    held.add(b"b" * 5)
                    await feeder.open_part(5, held, last=True, next_number=take)  # not waiting

            n.start_soon(feed)
            await trio.testing.wait_all_tasks_blocked()
            assert st.opened == [1, 2]
            st.gate.set()
    assert sorted(feeder.done) == [1, 2]


async def test_a_failed_part_ends_the_feeding_and_keeps_its_bytes():
    st = Gated()
    st.fail_part = 2
    st.gate.set()
    feeder, _ = await feeder_over(st, parts_in_flight=3)
    held = HeldBytes()
    take = numbers()
    reached_end = False
    async with feeder:
        for i in range(3):
            held.add(bytes([97 + i]) * 4)
            await feeder.open_part(4, held, last=False, next_number=take)
        await trio.sleep(1)  # cancelled by the failure
        reached_end = True
    assert not reached_end
    assert isinstance(feeder.error, storage.StorageUnavailable) and "part 2" in str(feeder.error)
    assert b"".join(feeder.open[2].pieces) == b"bbbb"  # every byte of the failed part is kept


async def test_a_part_left_unfilled_is_cut_off_alone():
    st = Gated()
    st.gate.set()
    feeder, _ = await feeder_over(st)
    held = HeldBytes()
    take = numbers()
    with trio.fail_after(5):
        async with feeder:
            held.add(b"x" * 8)
            await feeder.open_part(8, held, last=False, next_number=take)
            held.add(b"y" * 3)
            part = await feeder.open_part(8, held, last=True, next_number=take)
            assert feeder.feed(b"zz") is None and part.left == 3  # the body ends here
    assert sorted(feeder.done) == [1] and feeder.error is None  # part 1 went on
    assert list(feeder.open) == [2] and b"".join(feeder.open[2].pieces) == b"yyyzz"


async def test_feed_returns_what_does_not_fit():
    st = Gated()
    st.gate.set()
    feeder, _ = await feeder_over(st)
    held = HeldBytes()
    async with feeder:
        assert feeder.feed(b"abc") == b"abc"  # no part open yet
        held.add(b"ab")
        await feeder.open_part(4, held, last=True, next_number=numbers())
        rest = feeder.feed(b"cdef")
        assert bytes(rest) == b"ef" and feeder.current is None
    assert sorted(feeder.done) == [1]
