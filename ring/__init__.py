"""Ring ownership: which node *should* process and cache each video, and who comes next.

Public face:
- :class:`Ring`: an immutable consistent-hash ring (hashring 1.5 lookup, per-node placement)
  over ``{node_id: weight}`` of alive members: ``owner``, ``preference``, ``members``,
  ``vnodes``, ``version``, ``digest``, ``to_dict`` (the body of ``GET /v1/cluster/ring``);
- :class:`RingView`: the current ring of this node, rebuilt by ``update(alive)`` on membership
  change, with listeners;
- :func:`may_claim` -> :class:`ClaimDecision` ``(allowed, reason: ClaimReason)``: whether this
  node may try to claim a video's lease, given the ring, liveness and the lease;
- errors: :class:`RingError` > :class:`InvalidMember`;
- constants: ``DEFAULT_REPLICAS``, ``POINTS_PER_REPLICA``, ``MAX_WEIGHT``.

Who *may* commit is decided by the storage lease and epoch, never by the ring
(docs: DESIGN "Ownership = ring hint + storage lease + fencing epoch").
"""

from .claim import ClaimDecision, ClaimReason, may_claim
from .errors import InvalidMember, RingError
from .ring import (DEFAULT_REPLICAS, MAX_WEIGHT, POINTS_PER_REPLICA, Ring, RingListener, RingView,
                   RingViewStatistics, vnode_points)

__all__ = [
    "Ring", "RingView", "RingViewStatistics", "RingListener",
    "may_claim", "ClaimDecision", "ClaimReason",
    "RingError", "InvalidMember",
    "DEFAULT_REPLICAS", "MAX_WEIGHT", "POINTS_PER_REPLICA", "vnode_points",
]
