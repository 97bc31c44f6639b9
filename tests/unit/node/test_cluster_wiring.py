"""node.cluster: membership -> ring -> the worker's claim policy.  (The owner's wake after an
upload is node.upload's: tests/unit/node/upload/test_owner_wake.py.)

Pure and in-process: a membership stand-in fed member lists, the in-memory store, injected times.
"""

from __future__ import annotations

import io
import json

import pytest

import storage
from membership import ALIVE, DEAD, Member
from node import log
from node.cluster import Cluster, RingClaims
from node.config import Config, NodeSpec
from node.process.worker import ClaimAny, Worker
from node.records import layout, lifecycle as lc
from node.records.store import VideoStore

NODES = tuple(NodeSpec(f"n{i}", "127.0.0.1", 9100 + i, 9200 + i) for i in (1, 2, 3))
CFG = Config(nodes=NODES)


class Gossip:
    """The part of membership.Membership a Cluster reads, fed by the test."""

    def __init__(self, alive: set[str]) -> None:
        self.alive = set(alive)

    def alive_ids(self) -> set[str]:
        return set(self.alive)

    def members(self) -> list[Member]:
        return [Member(n.id, n.gossip_addr, n.http_addr, ALIVE if n.id in self.alive else DEAD, 1, 0.0)
                for n in NODES]

    def add_listener(self, callback) -> None:
        pass


def cluster_of(me: str, alive: set[str], wall=lambda: 100.0) -> tuple[Cluster, Gossip]:
    gossip = Gossip(alive)
    c = Cluster(CFG, me, gossip, wall=wall)  # type: ignore[arg-type]
    c.members_changed(gossip.members())
    return c, gossip


def video_owned_by(c: Cluster, owner: str) -> str:
    return next(v for v in (layout.new_id(1_700_000_000 + i) for i in range(10_000))
                if c.ring_view.ring.preference(v)[0] == owner)


def held(vid: str, holder: str, expires: float) -> dict:
    rec = lc.new_record(vid, holder, 0.0, state=lc.UPLOADED, filename="a.mp4", size=1)
    return lc.claim(rec, holder, 1.0, expires - 1.0, max_attempts=3)


def test_a_membership_change_rebuilds_the_ring_and_tells_the_listeners():
    # given a node that sees all three alive, and a listener
    c, gossip = cluster_of("n1", {"n1", "n2", "n3"})
    told = []
    c.add_listener(lambda: told.append(c.ring_view.ring.version))
    assert sorted(c.ring_view.ring.members) == ["n1", "n2", "n3"]
    # when n3 dies
    gossip.alive.discard("n3")
    c.members_changed(gossip.members())
    # then the ring has two members, the listener ran after the rebuild, and n3's death is dated
    assert sorted(c.ring_view.ring.members) == ["n1", "n2"] and told == [c.ring_view.ring.version]
    assert c.dead_for("n3") == 0.0 and c.dead_for("n2") is None


def test_the_owner_claims_a_free_video_and_the_others_do_not():
    c1, _ = cluster_of("n1", {"n1", "n2", "n3"})
    c2, _ = cluster_of("n2", {"n1", "n2", "n3"})
    vid = video_owned_by(c1, "n1")
    rec = lc.new_record(vid, "n1", 0.0, state=lc.UPLOADED, filename="a.mp4", size=1)
    assert RingClaims(c1).should_claim(vid, rec, now=5.0, deferring=False, in_flight=False)
    assert not RingClaims(c2).should_claim(vid, rec, now=5.0, deferring=False, in_flight=False)


def test_a_dead_holder_hands_off_to_the_next_alive_node_unless_we_are_deferring(monkeypatch):
    lines = io.StringIO()
    monkeypatch.setattr(log, "_stream", lines)
    # given n1 holds the lease of a video it owns, and n2 (next in preference) sees n1 dead
    c2, _ = cluster_of("n2", {"n2", "n3"})
    c_all, _ = cluster_of("n2", {"n1", "n2", "n3"})
    vid = next(v for v in (layout.new_id(1_700_000_000 + i) for i in range(10_000))
               if c_all.ring_view.ring.preference(v)[:2] == ["n1", "n2"])
    rec = held(vid, "n1", expires=60.0)
    policy = RingClaims(c2)
    # then n2 may claim before the lease expires, and says so in one log line
    assert not policy.holder_alive("n1") and policy.holder_alive("n3")
    assert policy.should_claim(vid, rec, now=10.0, deferring=False, in_flight=False)
    line = json.loads(lines.getvalue().splitlines()[-1])
    assert (line["event"], line["from_node"], line["video"]) == ("handoff", "n1", vid)
    # but not when n1 took the video from n2 lately (n1 then counts as alive: partitions)
    assert not policy.should_claim(vid, rec, now=10.0, deferring=True, in_flight=False)


async def test_the_worker_asks_its_claim_policy_before_every_claim(tmp_path):
    # given a pending video nobody holds, and a worker whose policy refuses it
    store = storage.MemoryStore()
    videos = VideoStore(store, "n1")
    vid = layout.new_id(1_700_000_000)
    await store.put(layout.record_key(vid), storage.cas.encode(
        lc.new_record(vid, "n1", 0.0, state=lc.UPLOADED, filename="a.mp4", size=1)))
    await store.put(layout.pending_key(vid), b"")
    asked = []

    class Refuse(ClaimAny):
        def should_claim(self, vid, rec, *, now, deferring, in_flight):
            asked.append((vid, rec["state"], deferring, in_flight))
            return False

    worker = Worker(videos, CFG, "n1", tmp_path, claim_policy=Refuse(), clock=lambda: 5.0)
    # when it scans
    await worker.scan_once()
    # then it asked, with what the policy needs, and claimed nothing
    assert asked == [(vid, lc.UPLOADED, False, False)]
    assert (await videos.get(vid)).doc["state"] == lc.UPLOADED and worker.stats.claims == 0


def test_a_worker_without_a_policy_claims_anything():
    policy = ClaimAny()
    assert policy.holder_alive("n9") and policy.should_claim("v", {}, now=0.0, deferring=True, in_flight=True)


@pytest.mark.parametrize("alive", [{"n1"}, {"n1", "n2", "n3"}])
def test_the_cluster_answers_who_is_alive_from_gossip(alive):
    c, _ = cluster_of("n1", alive)
    assert {n.id for n in NODES if c.alive(n.id)} == alive


def test_units_of_a_chunked_video_are_claimed_by_their_ring_node_and_taken_from_the_dead():
    from node.chunks import placement, state as cs

    # given three nodes that see each other, and the units of one video
    c = {n: cluster_of(n, {"n1", "n2", "n3"})[0] for n in ("n1", "n2", "n3")}
    vid = layout.new_id(1_700_000_000)
    docs = [cs.new_chunk(vid, cs.unit_name(i), 1, 0.0) for i in range(12)]
    # then each pending unit is claimed by exactly the node the ring places it on
    for d in docs:
        yes = [n for n, cl in c.items() if RingClaims(cl).should_claim_unit(
            d, now=1.0, in_flight=False, idle=False, deferring=False)]
        assert yes == [c["n1"].ring_view.ring.owner(placement.unit_key(vid, d["unit"]))]
    # when n1 holds a unit and n2 sees it dead, n2 takes it, unless n1 took it from n2 lately
    # (a unit whose preference is n1 then n2: one in six is; the video id is random, so look far)
    pool = [cs.new_chunk(vid, cs.unit_name(i), 1, 0.0) for i in range(200)]
    d = next(d for d in pool if c["n1"].ring_view.ring.preference(placement.unit_key(vid, d["unit"]))[:2]
             == ["n1", "n2"])
    held_unit = cs.claim(d, "n1", 1.0, 60.0, max_attempts=3)
    c2_alone, _ = cluster_of("n2", {"n2", "n3"})
    policy = RingClaims(c2_alone)
    # (not while n1's last renewal is fresh: it may be cut off from n2 but still reaching storage)
    assert not policy.should_claim_unit(held_unit, now=2.0, in_flight=False, idle=False, deferring=False)
    assert policy.should_claim_unit(held_unit, now=31.0, in_flight=False, idle=False, deferring=False)
    assert not policy.should_claim_unit(held_unit, now=31.0, in_flight=False, idle=False, deferring=True)
