"""Pure tests of ring.Ring: placement, movement on join/leave, weights, determinism."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hashring import HashRing
from hypothesis import given, settings
from hypothesis import strategies as st

from ring import MAX_WEIGHT, POINTS_PER_REPLICA, InvalidMember, Ring, RingError

REPO = Path(__file__).resolve().parents[3]
KEYS = [f"video-{i:05d}" for i in range(4000)]
NODES = {f"n{i:02d}": 1 for i in range(12)}


def owners(ring: Ring, keys=KEYS) -> dict[str, str | None]:
    return {k: ring.owner(k) for k in keys}


# -- basics ---------------------------------------------------------------------------------

def test_empty_ring_has_no_owner():
    ring = Ring()
    assert ring.owner("v") is None
    assert ring.preference("v") == []
    assert list(ring.iter_preference("v")) == []
    assert ring.vnodes == 0 and len(ring) == 0
    assert ring.to_dict()["members"] == []


def test_single_node_owns_everything():
    ring = Ring({"solo": 1})
    assert {ring.owner(k) for k in KEYS[:200]} == {"solo"}
    assert ring.preference("v") == ["solo"]


def test_equal_weights_match_stock_hashring_exactly():
    # given the same ids, hashring's own HashRing and our Ring place every key the same way
    ids = ["n3", "n1", "n2", "node-x", "node-y"]
    stock = HashRing(sorted(ids))
    ring = Ring(dict.fromkeys(ids, 1))
    assert ring.vnodes == len(stock._sorted_keys) == 5 * 40 * POINTS_PER_REPLICA
    for key in KEYS[:1000]:
        assert ring.owner(key) == stock.get_node(key)
        assert ring.preference(key) == list(stock.iterate_nodes(key))


def test_walk_matches_stock_iterate_nodes_with_a_point_collision():
    # our early-stopping iterate_nodes yields what hashring's does, also across a shared point
    ids = sorted([f"node-{i}" for i in range(30)] + ["node-546", "node-699"])
    stock = HashRing(ids)
    ring = Ring(dict.fromkeys(ids, 1))
    for key in KEYS[:300]:
        assert ring.preference(key) == list(stock.iterate_nodes(key))
        # hashring 1.5 ignores distinct=False (its filter always runs); so do we
        assert list(ring._hr.iterate_nodes(key, distinct=False)) == list(
            stock.iterate_nodes(key, distinct=False)) == ring.preference(key)


@pytest.mark.parametrize(("n", "expected_len"), [(None, 12), (0, 0), (1, 1), (3, 3), (50, 12),
                                                 (-1, 0)])
def test_preference_length(n, expected_len):
    assert len(Ring(NODES).preference("some-video", n)) == expected_len


def test_preference_is_distinct_complete_and_starts_with_owner():
    ring = Ring(NODES)
    for key in KEYS[:500]:
        pref = ring.preference(key)
        assert pref[0] == ring.owner(key)
        assert len(pref) == len(set(pref)) == len(NODES)
        assert set(pref) == set(NODES)
        assert ring.preference(key, 3) == pref[:3]


def test_every_node_owns_some_keys_and_share_sums_to_one():
    ring = Ring(NODES)
    counts = Counter(owners(ring).values())
    assert set(counts) == set(NODES)
    mean = len(KEYS) / len(NODES)
    assert all(0.6 * mean < c < 1.4 * mean for c in counts.values()), counts
    assert sum(ring.shares().values()) == pytest.approx(1.0)


# -- movement on leave and join -------------------------------------------------------------

@pytest.mark.parametrize("leaver", ["n00", "n05", "n11"])
def test_leave_moves_only_the_leavers_keys(leaver):
    before = Ring(NODES)
    after = Ring({n: w for n, w in NODES.items() if n != leaver})
    moved = {k for k in KEYS if before.owner(k) != after.owner(k)}
    assert moved == {k for k in KEYS if before.owner(k) == leaver}
    assert moved  # the leaver owned something
    for key in KEYS[:800]:
        # the handoff order of everyone else is untouched: the leaver just drops out
        assert after.preference(key) == [n for n in before.preference(key) if n != leaver]


def test_join_moves_keys_only_to_the_joiner():
    before = Ring(NODES)
    after = Ring({**NODES, "newcomer": 1})
    moved = {k for k in KEYS if before.owner(k) != after.owner(k)}
    assert moved and {after.owner(k) for k in moved} == {"newcomer"}
    assert 0.5 / 13 < len(moved) / len(KEYS) < 1.5 / 13
    for key in KEYS[:800]:
        assert [n for n in after.preference(key) if n != "newcomer"] == before.preference(key)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    members=st.dictionaries(st.text("abcdefgh-0123456789", min_size=1, max_size=6),
                            st.integers(1, 4), min_size=2, max_size=8),
    data=st.data(),
)
def test_property_single_change_moves_only_the_changed_nodes_keys(members, data):
    leaver = data.draw(st.sampled_from(sorted(members)))
    joiner = data.draw(st.text("xyz", min_size=1, max_size=4).filter(lambda s: s not in members))
    keys = KEYS[:400]
    full = Ring(members)
    without = Ring({n: w for n, w in members.items() if n != leaver})
    with_joiner = Ring({**members, joiner: data.draw(st.integers(1, 4))})
    for key in keys:
        if full.owner(key) != without.owner(key):
            assert full.owner(key) == leaver
        if full.owner(key) != with_joiner.owner(key):
            assert with_joiner.owner(key) == joiner


def test_weighted_change_moves_nothing_between_survivors():
    # stock hashring normalises weights by their sum, so a join shuffles keys between weighted
    # survivors; our per-node placement must not.
    weights = {"a": 1, "b": 3, "c": 2}
    before, after = Ring(weights), Ring({**weights, "d": 1})
    between_survivors = [k for k in KEYS if before.owner(k) != after.owner(k)
                         and after.owner(k) != "d"]
    assert between_survivors == []
    stock_before = HashRing(list(weights), weights)
    stock_after = HashRing([*weights, "d"], {**weights, "d": 1})
    stock_shuffled = [k for k in KEYS if stock_before.get_node(k) != stock_after.get_node(k)
                      and stock_after.get_node(k) != "d"]
    assert len(stock_shuffled) > 0.01 * len(KEYS)  # why we place the points ourselves


def test_weight_change_moves_keys_only_to_or_from_that_node():
    before = Ring(NODES)
    after = Ring({**NODES, "n03": 3})
    moved = [k for k in KEYS if before.owner(k) != after.owner(k)]
    assert moved and all(after.owner(k) == "n03" for k in moved)


# -- weights --------------------------------------------------------------------------------

def test_weights_skew_ownership_roughly_proportionally():
    weights = {"small": 1, "medium": 2, "large": 4, "huge": 8}
    ring = Ring(weights)
    keys = [f"k{i}" for i in range(30000)]
    counts = Counter(ring.owner(k) for k in keys)
    total = sum(weights.values())
    for node, weight in weights.items():
        expected = weight / total
        assert counts[node] / len(keys) == pytest.approx(expected, rel=0.25), (node, counts)
        assert ring.shares()[node] == pytest.approx(expected, rel=0.25)
        assert ring.vnodes_of(node) == weight * 40 * POINTS_PER_REPLICA
    assert counts["small"] < counts["medium"] < counts["large"] < counts["huge"]


@pytest.mark.parametrize("members", [
    {"": 1}, {"a": 0}, {"a": -1}, {"a": 1.5}, {"a": True}, {"a": MAX_WEIGHT + 1}, {3: 1},
    {"a": "1"},
])
def test_invalid_members_are_rejected(members):
    with pytest.raises(InvalidMember):
        Ring(members)
    assert issubclass(InvalidMember, RingError) and issubclass(InvalidMember, ValueError)


@pytest.mark.parametrize("replicas", [0, -3, True, 2.0])
def test_invalid_replicas_are_rejected(replicas):
    with pytest.raises(InvalidMember):
        Ring({"a": 1}, replicas=replicas)


def test_more_replicas_more_points():
    assert Ring({"a": 1, "b": 2}, replicas=10).vnodes == (1 + 2) * 10 * POINTS_PER_REPLICA


# -- determinism ----------------------------------------------------------------------------

def test_insertion_order_does_not_matter():
    forward = Ring(NODES)
    backward = Ring(dict(reversed(list(NODES.items()))))
    assert forward == backward and forward.digest == backward.digest
    assert owners(forward) == owners(backward)


def test_point_collision_goes_to_the_same_node_whatever_the_order():
    # md5 words of "node-546-j" and "node-699-j" collide at 1410088479: the later id in sorted
    # order wins, and when it leaves the point reverts to the other.
    a = Ring({"node-546": 1, "node-699": 1})
    b = Ring({"node-699": 1, "node-546": 1})
    quota = 40 * POINTS_PER_REPLICA
    assert a.vnodes == b.vnodes == 2 * quota - 1
    assert (a.vnodes_of("node-699"), a.vnodes_of("node-546")) == (quota, quota - 1)
    assert (b.vnodes_of("node-699"), b.vnodes_of("node-546")) == (quota, quota - 1)
    assert Ring({"node-546": 1}).vnodes_of("node-546") == quota


_CHILD = """
import hashlib, json, sys
from ring import Ring
ring = Ring({f"n{i:02d}": 1 + i % 3 for i in range(12)})
keys = [f"video-{i:05d}" for i in range(2000)]
body = json.dumps([ring.digest, [ring.preference(k, 3) for k in keys]])
print(hashlib.sha256(body.encode()).hexdigest())
"""


def test_same_ring_in_every_process_whatever_the_hash_seed():
    ring = Ring({f"n{i:02d}": 1 + i % 3 for i in range(12)})
    keys = [f"video-{i:05d}" for i in range(2000)]
    body = json.dumps([ring.digest, [ring.preference(k, 3) for k in keys]])
    here = hashlib.sha256(body.encode()).hexdigest()
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _CHILD], cwd=REPO, env=env, timeout=60,
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == here


def test_digest_depends_on_content_not_version():
    assert Ring(NODES, version=1).digest == Ring(NODES, version=7).digest
    assert Ring(NODES, version=1) != Ring(NODES, version=7)
    assert Ring(NODES).digest != Ring({**NODES, "n00": 2}).digest
    assert Ring(NODES).digest != Ring(NODES, replicas=41).digest


# -- GET /v1/cluster/ring -------------------------------------------------------------------

def test_to_dict_is_json_and_describes_the_ring():
    ring = Ring({"n1": 1, "n2": 2, "n3": 1}, version=5)
    body = json.loads(json.dumps(ring.to_dict()))
    assert body["version"] == 5
    assert body["digest"] == ring.digest
    assert body["replicas"] == 40 and body["points_per_weight"] == 120
    assert [m["id"] for m in body["members"]] == ["n1", "n2", "n3"]
    assert [m["weight"] for m in body["members"]] == [1, 2, 1]
    assert [m["vnodes"] for m in body["members"]] == [120, 240, 120]
    assert body["vnodes"] == 480 == sum(m["vnodes"] for m in body["members"])
    assert sum(m["share"] for m in body["members"]) == pytest.approx(1.0, abs=1e-5)
