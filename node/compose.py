"""The one place a node is put together: every part built once, typed, and handed down.

:func:`compose_node` builds, without starting anything (order = who needs whom)::

    NodeMetrics (its own registry; node.main makes it first, for the store's storage observer)
    StorageGate -> GatedStore(store): what HTTP handlers use (fails fast while storage is cut)
    VideoStore(gated store) for the HTTP side, VideoStore(store) for the worker and webhooks
    (each with an Outbox when webhooks.urls are set)
    Membership -> Cluster (ring view, follows membership)
    Worker(claim_policy=RingClaims(cluster), on_transcoded=metrics)  cluster tells it of every change
    Deliverer(owns=the ring's owner is us) when webhooks.urls are set; pokes on ring changes
    SegmentCache(CacheSources)  follows Peers(ring, alive addresses) on every change
    TusUploads(on_patch=metrics)  ReadyRecords  OwnerNotifier(cluster, worker.poke)
    NodeContext(all of the above)
    collectors on the registry reading the cache's, membership's, worker's and node's statistics()
    create_app(ctx)  FastLane(ctx) when cache.fast_lane  hypercorn's Config

and node.main starts the services of the returned :class:`Node` in one nursery.  Nothing here
patches anyone: the dependency patches the node needs are in node.http.patches, applied while
it serves.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import hypercorn.config

import storage
from membership import Membership

from node import log
from node.cluster import Cluster, RingClaims
from node.upload.landing import OwnerNotifier
from node.config import Config
from node.context import NodeContext
from node.metrics import (NodeMetrics, NodeState, Reading, cache_families, membership_families,
                          node_families, webhooks_families, worker_families)
from node.http import FastLane, create_app
from node.http.app import ShoalApp
from node.play import ReadyRecords
from node.play import Peers, SegmentCache
from node.process import Worker
from node.records.outbox import Outbox
from node.records.store import VideoStore
from node.upload import TusUploads
from node.webhooks import Deliverer

HTTP_READ_TIMEOUT = 120  # a client that sends nothing for 2 minutes is dropped
HTTP_KEEP_ALIVE = 75
HTTP_GRACEFUL = 2


@dataclass(frozen=True)
class CacheSources:
    """What the segment cache reads of its node (node.play.segcache): its config and id, storage,
    and the cluster view that says who owns a video and who is alive."""

    cfg: Config
    node_id: str
    store: storage.ObjectStore
    data_dir: Path
    cluster_key: bytes | None  # node-to-node proof (node.peer_auth); None: hops unauthenticated


@dataclass(frozen=True)
class Node:
    """A composed node: the context its handlers share and the services node.main starts."""

    ctx: NodeContext
    cluster: Cluster
    owners: OwnerNotifier
    app: ShoalApp
    lane: FastLane | None  # answers cache hits ahead of hypercorn (node.http.patches.serving)
    http: hypercorn.config.Config


def http_config(bind: str) -> hypercorn.config.Config:
    hc = hypercorn.config.Config()
    hc.bind = [bind]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")  # into node.log's JSON lines (node.log.route_stdlib)
    hc.read_timeout = HTTP_READ_TIMEOUT
    hc.keep_alive_timeout = HTTP_KEEP_ALIVE
    hc.graceful_timeout = HTTP_GRACEFUL
    return hc


def node_metrics() -> NodeMetrics:
    """The metrics of one node process: its own registry, with the process's RSS, CPU and files."""
    return NodeMetrics(process=True)


def compose_node(cfg: Config, node_id: str, store: storage.ObjectStore, data_dir: Path, *,
                 membership: Membership | None = None, metrics: NodeMetrics | None = None) -> Node:
    """Build every part of node ``node_id`` over ``store``; nothing runs yet.  ``membership``:
    the gossip service to use (default: one over UDP, as cluster.yml says); ``metrics``: the
    node's metrics, whose ``storage`` observer ``store`` was opened with (default: new ones,
    without process metrics, for a node built in a test process)."""
    if metrics is None:
        metrics = NodeMetrics(process=False)
    spec = cfg.node(node_id)
    hooks = cfg.webhooks
    # Requests answer within the storage probe's bound when storage cannot be reached: the HTTP
    # side (records, tus, playback misses) goes through the gate; the background services (the
    # worker, webhooks) keep their own bounds and retries on the store itself.
    gate = storage.StorageGate()
    gated = storage.GatedStore(store, gate)

    def records(over: storage.ObjectStore) -> VideoStore:
        return VideoStore(over, node_id, outbox=Outbox(over, clock=time.time,
                                                       refresh_after=hooks.intent_grace / 5)
                          if hooks.urls else None)
    videos, background = records(gated), records(store)
    if membership is None:
        membership = Membership(node_id, gossip_addr=spec.gossip_addr, http_addr=spec.http_addr,
                                cluster=cfg.cluster, key=cfg.cluster_key(),
                                seeds={n.id: n.gossip_addr for n in cfg.seed_nodes},
                                peers={n.id: n.gossip_addr for n in cfg.nodes},
                                config=cfg.membership, log=log.emit)
    cluster = Cluster(cfg, node_id, membership)
    worker = Worker(background, cfg, node_id, data_dir, claim_policy=RingClaims(cluster),
                    on_transcoded=metrics.transcoded)
    cluster.add_listener(worker.poke)  # a membership change may hand this node videos
    deliverer = None
    if hooks.urls:
        secret = hooks.secret()
        assert secret is not None, "node.config.check_secrets refuses webhook URLs without the key"
        deliverer = Deliverer(background, hooks, node_id, secret,
                              owns=lambda vid: cluster.owner_of(vid) in (None, node_id))
        cluster.add_listener(deliverer.poke)  # a dead node's events may be ours now
    cache = SegmentCache(CacheSources(cfg=cfg, node_id=node_id, store=gated, data_dir=data_dir,
                                      cluster_key=cfg.cluster_key()),
                         data_dir / "cache")
    # playback reads who owns what from a snapshot taken at each membership change, never per request
    cluster.add_listener(lambda: cache.follow(Peers(cluster.ring_view.ring, cluster.alive_addrs())))
    tus = TusUploads(videos, node_id, part_size=cfg.storage.part_size,
                     lock_ttl=cfg.timing.lease_seconds, expiry=cfg.timing.upload_expiry,
                     parts_in_flight=cfg.storage.parts_in_flight, alive=cluster.alive,
                     on_uploaded=lambda _vid: worker.poke(), on_patch=metrics.tus_patch)
    owners = OwnerNotifier(cfg, node_id, cfg.cluster_key(), cluster.owner_of, worker.poke)
    ctx = NodeContext(cfg=cfg, node_id=node_id, store=gated, videos=videos, worker=worker,
                      data_dir=data_dir, token=cfg.token(), membership=membership,
                      ring_view=cluster.ring_view, cache=cache, ready_records=ReadyRecords(),
                      tus=tus, owners=owners, cluster_key=cfg.cluster_key(), webhooks=deliverer,
                      metrics=metrics, storage_gate=gate)
    # what the parts count themselves is read at scrape time
    registry = metrics.registry
    registry.register(Reading(lambda: node_families(NodeState(time.time() - ctx.started_at, ctx.storage_ok))))
    registry.register(Reading(lambda: worker_families(worker.stats)))
    registry.register(Reading(lambda: cache_families(cache.statistics())))
    registry.register(Reading(lambda: membership_families(membership.statistics(),
                                                          (m.state for m in membership.members()))))
    if deliverer is not None:
        registry.register(Reading(lambda: webhooks_families(deliverer.statistics())))
    app = create_app(ctx)
    hc = http_config(spec.http_addr)
    lane = FastLane(ctx, keep_alive_timeout=hc.keep_alive_timeout,
                    read_timeout=hc.read_timeout) if cfg.cache.fast_lane else None
    log.debug("node_composed", pid=os.getpid(), fast_lane=lane is not None)
    return Node(ctx=ctx, cluster=cluster, owners=owners, app=app, lane=lane, http=hc)
