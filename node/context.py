"""What one node process holds, shared by its HTTP handlers and background services."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import storage

from node.config import Config
from node.records.store import VideoStore
from node.process.worker import Worker


@dataclass
class NodeContext:
    cfg: Config
    node_id: str
    store: storage.ObjectStore
    videos: VideoStore
    worker: Worker
    data_dir: Path
    token: str | None
    cluster_key: bytes | None = None  # node-to-node proof (node.peer_auth); None: hops unauthenticated
    membership: Any = None  # membership.Membership once gossip runs
    ring_view: Any = None  # ring.RingView once the ring runs
    cache: Any = None  # the owner's segment cache (node.play.segcache)
    fast_lane: Any = None  # node.http.fastlane.FastLane when cache.fast_lane is on
    ready_records: Any = None  # node.play.ReadyRecords: ready records read in the last second
    nursery: Any = None  # the node's main nursery, for background sends
    started_at: float = field(default_factory=time.time)
    storage_ok: bool = False  # last storage probe succeeded
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def alive(self, node_id: str) -> bool:
        """Is this node alive in our membership view?  Without gossip, everyone is."""
        if self.membership is None:
            return True
        return node_id in self.membership.alive_ids()
