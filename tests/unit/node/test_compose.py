"""node.compose builds a whole node once, every part typed and in place before anything runs
(in-process: the in-memory store; gossip is built but not started)."""

from __future__ import annotations

from msgspec.structs import replace

import pytest
from quart import request

import storage
from membership import Membership
from ring import RingView
from node.cluster import Cluster, RingClaims
from node.upload.landing import OwnerNotifier
from node.compose import compose_node
from node.config import CacheConfig, Config, Limits, NodeSpec
from node.http import FastLane
from node.play import ReadyRecords
from node.play import SegmentCache
from node.process import Worker
from node.records.store import VideoStore
from node.upload import TusUploads

NODES = (NodeSpec("n1", "127.0.0.1", 9101, 9201), NodeSpec("n2", "127.0.0.1", 9102, 9202))


def compose(tmp_path, **changes):
    return compose_node(replace(Config(nodes=NODES), **changes), "n1", storage.MemoryStore(), tmp_path)


def test_every_part_is_built_once_and_typed(tmp_path):
    node = compose(tmp_path)
    ctx = node.ctx
    for value, kind in [(ctx.videos, VideoStore), (ctx.worker, Worker), (ctx.membership, Membership),
                        (ctx.ring_view, RingView), (ctx.cache, SegmentCache), (ctx.tus, TusUploads),
                        (ctx.ready_records, ReadyRecords), (ctx.owners, OwnerNotifier),
                        (node.cluster, Cluster), (node.lane, FastLane)]:
        assert isinstance(value, kind), (value, kind)
    # one membership and one ring, seen alike by the context, the cluster and the worker's policy
    assert ctx.membership is node.cluster.membership and ctx.ring_view is node.cluster.ring_view
    assert isinstance(ctx.worker.claim_policy, RingClaims)
    assert ctx.owners is node.owners
    # nothing is hung on the context from outside its declared fields
    assert set(vars(ctx)) == set(type(ctx).__dataclass_fields__)


def test_a_membership_change_wakes_the_worker(tmp_path):
    node = compose(tmp_path)
    assert not node.ctx.worker._wake.is_set()
    node.cluster.members_changed([])
    assert node.ctx.worker._wake.is_set()


def test_playback_follows_the_membership_without_asking_it_per_request(tmp_path):
    from membership import ALIVE, DEAD, Member
    node = compose(tmp_path)
    cache = node.ctx.cache
    # before gossip runs, every configured node is a peer
    assert cache._peers.addrs == {"n2": "127.0.0.1:9102"}

    def member(state):
        return Member(id="n2", gossip_addr="127.0.0.1:9202", http_addr="127.0.0.1:9102", state=state,
                      incarnation=0, since=0.0)
    node.cluster.members_changed([member(DEAD)])  # n2 died: only this node is left
    assert cache._peers.addrs == {} and cache.owner_of("any-video") == "n1"
    node.cluster.members_changed([member(ALIVE)])
    assert cache._peers.addrs == {"n2": "127.0.0.1:9102"}
    assert cache._peers.ring is node.cluster.ring_view.ring


@pytest.mark.parametrize("on", [True, False])
def test_the_fast_lane_is_built_only_when_configured(tmp_path, on):
    node = compose(tmp_path, cache=CacheConfig(fast_lane=on))
    assert (node.lane is not None) is on


def test_hypercorn_is_configured_for_this_node(tmp_path):
    node = compose(tmp_path)
    assert node.http.bind == ["127.0.0.1:9101"]
    assert node.http.read_timeout == 120 and node.http.keep_alive_timeout == 75


async def test_each_app_bounds_request_bodies_with_its_own_buffer(tmp_path):
    # given two nodes in one process with different body buffers
    small = compose(tmp_path / "a", limits=Limits(body_buffer=64 << 10)).app
    large = compose(tmp_path / "b", limits=Limits(body_buffer=4 << 20)).app
    for app in (small, large):
        @app.post("/limit")
        async def limit():
            return {"limit": request.body.limit}
    # when each receives a body, then each body has its own app's bound
    for app, expected in ((small, 64 << 10), (large, 4 << 20)):
        r = await app.test_client().post("/limit", data=b"x" * 10)
        assert (await r.get_json()) == {"limit": expected}


def test_the_metrics_handed_in_are_the_nodes_and_read_its_parts(tmp_path):
    # given metrics made before the node (as node.main makes them, for the store's observer)
    from node.compose import node_metrics
    metrics = node_metrics()
    node = compose_node(Config(nodes=NODES), "n1", storage.MemoryStore(), tmp_path, metrics=metrics)
    # then the context records into them, and the worker and tus uploads report to them
    assert node.ctx.metrics is metrics
    assert node.ctx.worker.on_transcoded == metrics.transcoded
    assert node.ctx.tus.on_patch == metrics.tus_patch
    # and a scrape reads the parts' statistics and the process
    reg = metrics.registry
    assert reg.get_sample_value("shoal_cache_max_bytes") == node.ctx.cache.statistics().max_bytes
    states = [reg.get_sample_value("shoal_members", {"state": s}) for s in ("alive", "suspect", "dead", "left")]
    assert None not in states and sum(states) == len(node.ctx.membership.members())
    assert reg.get_sample_value("shoal_worker_claims_total") == 0
    assert reg.get_sample_value("shoal_up") == 1
    assert reg.get_sample_value("process_resident_memory_bytes") > 0
