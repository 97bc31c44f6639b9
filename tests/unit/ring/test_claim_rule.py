"""Table tests of ring.may_claim: who may try to claim a video's lease."""

from __future__ import annotations

import pytest

from ring import ClaimReason, Ring, may_claim

R = ClaimReason
RING = Ring({"a": 1, "b": 1, "c": 1})
ALL = {"a", "b", "c"}
# a video whose handoff order is a, b, c (found by walking ids; deterministic)
VIDEO = next(f"video-{i}" for i in range(10_000) if RING.preference(f"video-{i}") == ["a", "b", "c"])

# (self, alive, lease_holder, lease_expired, holder_alive, in_flight) -> (allowed, reason)
TABLE = [
    # fresh upload, nobody holds the lease: only the owner claims
    ("a", ALL, None, False, False, True, True, R.OWNER_LEASE_FREE),
    ("b", ALL, None, False, False, True, False, R.PREDECESSOR_ALIVE),
    ("c", ALL, None, False, False, True, False, R.PREDECESSOR_ALIVE),
    # owner dead in this node's view (ring not rebuilt yet): the next alive node claims
    ("b", {"b", "c"}, None, False, False, True, True, R.PREDECESSORS_DEAD),
    ("c", {"b", "c"}, None, False, False, True, False, R.PREDECESSOR_ALIVE),
    ("c", {"c"}, None, False, False, True, True, R.PREDECESSORS_DEAD),
    # lease held by a live node and not expired: nobody steals, not even the owner
    ("a", ALL, "b", False, True, True, False, R.HELD_BY_ALIVE_HOLDER),
    ("c", ALL, "b", False, True, True, False, R.HELD_BY_ALIVE_HOLDER),
    ("a", ALL, "a", False, True, True, False, R.HELD_BY_SELF),
    ("b", ALL, "b", False, True, True, False, R.HELD_BY_SELF),
    # holder dead per gossip, lease not expired yet: the first alive in preference claims at once
    ("a", {"a", "c"}, "b", False, False, True, True, R.OWNER_HOLDER_DEAD),
    ("c", {"a", "c"}, "b", False, False, True, False, R.PREDECESSOR_ALIVE),
    ("b", {"b", "c"}, "a", False, False, True, True, R.PREDECESSORS_DEAD),
    ("c", {"b", "c"}, "a", False, False, True, False, R.PREDECESSOR_ALIVE),
    ("c", {"c"}, "a", False, False, True, True, R.PREDECESSORS_DEAD),
    # lease expired (holder alive but stopped renewing): owner claims, and so may successors
    ("a", ALL, "b", True, True, True, True, R.OWNER_LEASE_EXPIRED),
    ("b", ALL, "b", True, True, True, True, R.SUCCESSOR_LEASE_EXPIRED),
    ("c", ALL, "a", True, True, True, True, R.SUCCESSOR_LEASE_EXPIRED),
    ("a", ALL, "a", True, True, True, True, R.OWNER_LEASE_EXPIRED),
    # expired and dead: expiry is reported first for the owner
    ("a", ALL, "c", True, False, True, True, R.OWNER_LEASE_EXPIRED),
    # our own lease from before a restart: the old incarnation is dead
    ("a", ALL, "a", False, True, False, True, R.OWNER_HOLDER_DEAD),
    ("b", ALL, "b", False, True, False, False, R.PREDECESSOR_ALIVE),
    ("b", {"b", "c"}, "b", False, True, False, True, R.PREDECESSORS_DEAD),
    # not a member of the ring (left, or not joined yet): never
    ("z", ALL | {"z"}, None, False, False, True, False, R.NOT_IN_RING),
    ("z", ALL | {"z"}, "a", True, False, True, False, R.NOT_IN_RING),
    # a free lease ignores lease_expired / holder_alive noise
    ("a", ALL, None, True, True, True, True, R.OWNER_LEASE_FREE),
    ("b", ALL, None, True, False, True, False, R.PREDECESSOR_ALIVE),
]


@pytest.mark.parametrize(
    ("self_id", "alive", "holder", "expired", "holder_alive", "in_flight", "allowed", "reason"),
    TABLE,
)
def test_may_claim_table(self_id, alive, holder, expired, holder_alive, in_flight, allowed,
                         reason):
    decision = may_claim(VIDEO, self_id, RING, alive, holder, expired, holder_alive,
                         self_in_flight=in_flight)
    assert decision == (allowed, reason)
    ok, why = decision  # unpacks as the (bool, reason) pair
    assert why == reason.value  # StrEnum: logs as its plain string


def test_empty_ring_claims_nothing():
    assert may_claim(VIDEO, "a", Ring(), ALL, None, False, False) == (False, R.NOT_IN_RING)


def test_after_rebuild_exactly_one_node_claims_a_free_video():
    # with agreeing views, for every video exactly one node (the owner) may claim it
    ring = Ring({f"n{i}": 1 for i in range(5)})
    alive = set(ring.members)
    for i in range(300):
        video = f"v{i}"
        claimers = [n for n in ring.members
                    if may_claim(video, n, ring, alive, None, False, False).allowed]
        assert claimers == [ring.owner(video)]


def test_holder_death_hands_off_to_exactly_one_node():
    # the holder died: the ring rebuilt without it picks exactly one successor: its next owner
    full = Ring({f"n{i}": 1 for i in range(5)})
    for i in range(300):
        video = f"v{i}"
        holder = full.owner(video)
        survivors = {n: 1 for n in full.members if n != holder}
        ring = Ring(survivors)
        claimers = [n for n in survivors
                    if may_claim(video, n, ring, set(survivors), holder, False, False).allowed]
        assert claimers == [full.preference(video)[1]]
