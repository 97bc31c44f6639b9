"""May this node claim a video?  The ring's half of the ownership rule, as one pure function.

The ring says who *should* work on a video; the lease in the video's record says who *may*
(docs: DESIGN "Ownership = ring hint + storage lease + fencing epoch").  Before a node tries the
claim CAS it asks :func:`may_claim`; the CAS and the epoch keep it safe if views disagree, this
function keeps nodes from racing for the same record when they agree.

The rules, in the order they are applied (first match decides):

====  ==========================================  =======  =============================
 #    situation                                   claim?   reason
====  ==========================================  =======  =============================
 1    ``self_id`` not in the ring                 no       ``not_in_ring``
 2    lease held by self, not expired, and this   no       ``held_by_self`` (renew it)
      process is working on it
 3    lease held by another node, not expired,    no       ``held_by_alive_holder``
      holder alive  (work in flight is never
      stolen, not even by the owner)
 4    self is the owner (first in preference)     yes      ``owner_lease_free`` /
                                                           ``owner_lease_expired`` /
                                                           ``owner_holder_dead``
 5    every node before self in the preference    yes      ``predecessors_dead``
      list is dead (not in ``alive_ids``)
 6    the lease has expired                       yes      ``successor_lease_expired``
 7    otherwise (a live predecessor will do it)   no       ``predecessor_alive``
====  ==========================================  =======  =============================

"Lease free" is ``lease_holder is None``.  A lease this node holds from an earlier incarnation
(``lease_holder == self_id`` but ``self_in_flight=False``, e.g. after a restart) counts as held
by a dead holder.  Rule 4 lists reasons by precedence: free, then expired, then holder dead.

Rule 6 lets any successor claim once the lease expired with the holder still alive (a holder
that stopped renewing); the runtime should stagger such claims by preference rank so that
they do not all hit the same record at once.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import NamedTuple

from .ring import Ring


class ClaimReason(enum.StrEnum):
    NOT_IN_RING = "not_in_ring"
    HELD_BY_SELF = "held_by_self"
    HELD_BY_ALIVE_HOLDER = "held_by_alive_holder"
    OWNER_LEASE_FREE = "owner_lease_free"
    OWNER_LEASE_EXPIRED = "owner_lease_expired"
    OWNER_HOLDER_DEAD = "owner_holder_dead"
    PREDECESSORS_DEAD = "predecessors_dead"
    SUCCESSOR_LEASE_EXPIRED = "successor_lease_expired"
    PREDECESSOR_ALIVE = "predecessor_alive"


class ClaimDecision(NamedTuple):
    allowed: bool
    reason: ClaimReason


def may_claim(video_id: str, self_id: str, ring: Ring, alive_ids: Collection[str],
              lease_holder: str | None, lease_expired: bool, holder_alive: bool, *,
              self_in_flight: bool = True) -> ClaimDecision:
    """Decide whether ``self_id`` may try to claim ``video_id`` now (see the module table).

    ``alive_ids``: the members this node currently believes alive (usually the ring's members;
    fresher if gossip changed and the ring was not rebuilt yet).  ``lease_holder``,
    ``lease_expired``: from the video's record (``lease_expired`` is ignored when the lease is
    free).  ``holder_alive``: whether gossip says the holder is alive (ignored when free).
    ``self_in_flight``: whether this process is working on the video right now.
    """
    if self_id not in ring:
        return ClaimDecision(False, ClaimReason.NOT_IN_RING)
    lease_free = lease_holder is None
    expired = lease_expired and not lease_free
    holder_dead = not lease_free and not holder_alive
    if lease_holder == self_id and not expired:
        if self_in_flight:
            return ClaimDecision(False, ClaimReason.HELD_BY_SELF)
        holder_dead = True  # the incarnation that claimed it is gone
    elif not lease_free and not expired and not holder_dead:
        return ClaimDecision(False, ClaimReason.HELD_BY_ALIVE_HOLDER)

    # Only the part of the preference list before self matters: walk it lazily.
    alive = alive_ids if isinstance(alive_ids, (set, frozenset)) else set(alive_ids)
    predecessor_alive = False
    for rank, node_id in enumerate(ring.iter_preference(video_id)):
        if node_id == self_id:
            if rank == 0:
                if lease_free:
                    return ClaimDecision(True, ClaimReason.OWNER_LEASE_FREE)
                if expired:
                    return ClaimDecision(True, ClaimReason.OWNER_LEASE_EXPIRED)
                return ClaimDecision(True, ClaimReason.OWNER_HOLDER_DEAD)
            break
        if node_id in alive:
            predecessor_alive = True
            break
    if not predecessor_alive:
        return ClaimDecision(True, ClaimReason.PREDECESSORS_DEAD)
    if expired:
        return ClaimDecision(True, ClaimReason.SUCCESSOR_LEASE_EXPIRED)
    return ClaimDecision(False, ClaimReason.PREDECESSOR_ALIVE)
