"""What one node process holds, shared by its HTTP handlers and background services.

Built once, by :func:`node.compose.compose_node` (tests build it with only the fields they need):
every part is a typed field given at construction, none is filled in later from another module.
The optional fields are ``None`` only where a test runs the HTTP edge without that part; a
composed node has every one of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import storage

from node.config import Config
from node.metrics import NodeMetrics
from node.play.answers import ReadyRecords
from node.process.worker import Worker
from node.records.store import VideoStore

if TYPE_CHECKING:  # only for the annotations: these modules import this one
    from membership import Membership
    from ring import RingView

    from node.upload.landing import OwnerNotifier
    from node.play.segcache import SegmentCache
    from node.upload.tus_uploads import TusUploads
    from node.webhooks import Deliverer


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
    # Invariant: membership and ring_view are both set (a composed node) or both None (a test
    # of one node without gossip, where every configured node counts as alive).
    membership: Membership | None = None
    ring_view: RingView | None = None  # rebuilt from membership by node.cluster.Cluster
    cache: SegmentCache | None = None  # the owner's segment cache (node.play)
    ready_records: ReadyRecords = field(default_factory=ReadyRecords)  # ready records read in the last second, for playback
    tus: TusUploads | None = None  # resumable uploads (node.upload)
    owners: OwnerNotifier | None = None  # tells a video's owner that its upload landed here
    webhooks: Deliverer | None = None  # delivers the outbox's events (None: no webhooks.urls)
    started_at: float = field(default_factory=time.time)
    storage_ok: bool = False  # last storage probe succeeded
    # what this node measures, on its own registry (node.metrics); a test's own when not given
    metrics: NodeMetrics = field(default_factory=lambda: NodeMetrics(process=False))
    # the probe's verdict for `store` (a storage.GatedStore in a composed node): closed, the
    # HTTP side's storage calls fail at once with StorageUnavailable (503 + Retry-After)
    storage_gate: storage.StorageGate = field(default_factory=storage.StorageGate)

    def alive(self, node_id: str) -> bool:
        """Is this node alive in our membership view?  Without gossip, everyone is."""
        if self.membership is None:
            return True
        return node_id in self.membership.alive_ids()
