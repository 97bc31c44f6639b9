"""Which unit may this node claim: the ring by unit key, orphans, the idle steal, the order."""

from __future__ import annotations

from collections import Counter

from node.chunks import placement as pl
from node.chunks import state as cs
from ring import Ring

RING = Ring({"n1": 1, "n2": 1, "n3": 1})
ALL = {"n1", "n2", "n3"}
VIDEO = "a" * 26
LEASE = 10.0


def units(n=12, now=0.0):
    return [cs.new_chunk(VIDEO, cs.unit_name(i), 1, now) for i in range(n)]


def decide(doc, me, now=1.0, alive=ALL, idle=False, in_flight=False, steal_after=30.0):
    return pl.may_claim_unit(doc, me, RING, alive, now, holder_alive=lambda h: h in alive,
                             in_flight=in_flight, idle=idle, steal_after=steal_after)


def test_the_chunks_of_one_video_spread_over_the_ring():
    owners = Counter(RING.owner(pl.unit_key(VIDEO, d["unit"])) for d in units(30))
    assert set(owners) == ALL


def test_exactly_the_placed_node_claims_a_pending_chunk():
    for doc in units():
        yes = [me for me in sorted(ALL) if decide(doc, me).allowed]
        assert yes == [RING.owner(pl.unit_key(VIDEO, doc["unit"]))]
        assert decide(doc, yes[0]).placed_here


def test_a_dead_placed_node_hands_its_chunks_to_the_next_in_preference():
    doc = units(1)[0]
    first, second, _ = RING.preference(pl.unit_key(VIDEO, doc["unit"]))
    alive = ALL - {first}
    assert decide(doc, second, alive=alive).allowed


def test_a_chunk_held_by_a_live_node_is_never_taken_and_an_orphan_is():
    doc = units(1)[0]
    placed = RING.owner(pl.unit_key(VIDEO, doc["unit"]))
    other = sorted(ALL - {placed})[0]
    held = cs.claim(doc, other, 1.0, LEASE, max_attempts=3)  # an idle steal earlier, say
    assert not decide(held, placed, now=2.0).allowed
    # when the holder dies, the placed node takes it back once the lease went unrenewed half its length
    assert not decide(held, placed, now=2.0, alive=ALL - {other}).allowed
    assert decide(held, placed, now=1.0 + LEASE / 2, alive=ALL - {other}).allowed
    # when the lease ran out, the placed node takes it too
    assert decide(held, placed, now=12.0).allowed


def test_an_idle_node_steals_a_chunk_pending_too_long():
    doc = units(1)[0]
    placed = RING.owner(pl.unit_key(VIDEO, doc["unit"]))
    other = sorted(ALL - {placed})[0]
    assert not decide(doc, other, now=10.0, idle=True).allowed
    assert not decide(doc, other, now=40.0, idle=False).allowed
    d = decide(doc, other, now=40.0, idle=True)
    assert d.allowed and d.reason == pl.IDLE_STEAL and not d.placed_here


def test_work_in_flight_here_is_not_claimed_again():
    doc = units(1)[0]
    placed = RING.owner(pl.unit_key(VIDEO, doc["unit"]))
    assert decide(doc, placed, in_flight=True) == pl.UnitDecision(False, "in_flight", True)


def test_claim_order_audio_first_then_placed_here_then_time_order():
    docs = units(6) + [cs.new_chunk(VIDEO, cs.AUDIO, 1, 0.0)]
    decided = [(d, pl.UnitDecision(True, "x", d["unit"] in ("00004", "00002"))) for d in docs]
    decided.append((cs.new_chunk(VIDEO, "00005", 1, 0.0), pl.UnitDecision(False, "no", True)))
    order = [d["unit"] for d in pl.claim_order(decided)]
    assert order == [cs.AUDIO, "00002", "00004", "00000", "00001", "00003", "00005"]
