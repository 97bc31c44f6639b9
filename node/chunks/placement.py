"""Which unit of which chunked video may this node claim now: the ring's say, pure.

Each unit (a chunk, or the audio track) is placed on the ring by its own key,
``<video>/<unit>`` (:func:`unit_key`), so the chunks of one video spread over every alive node,
and the ring's claim table (``ring.may_claim``: owner first; a successor only when every node
before it is dead or the lease expired; work in flight never stolen from a live holder) decides
who should take it.  One rule is added for chunks, so a node with nothing to do helps a busy
one instead of idling:

====  ==================================================  =======  =====================
 #    situation                                           claim?   reason
====  ==================================================  =======  =====================
 1    the unit is not claimable (``state.claimable``)      no       its reason
 2    the ring says yes (``ring.may_claim`` on the key)   yes      the ring's reason
 3    pending, not backing off, and pending for           yes      ``idle_steal``
      ``steal_after`` seconds while this node is idle
 4    otherwise                                           no       the ring's reason
====  ==================================================  =======  =====================

Safety never depends on this: the unit's lease and epoch in storage decide who commits.
:func:`claim_order` sorts what may be claimed: the audio unit first (short, and every chunk's
stitched playlist waits for it), then units placed on this node, then orphans and steals, each
in time order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ring import Ring, may_claim

from node.chunks import state

IDLE_STEAL = "idle_steal"


def unit_key(video: str, unit: str) -> str:
    """The ring key of one unit: places the chunks of one video independently."""
    return f"{video}/{unit}"


@dataclass(frozen=True)
class UnitDecision:
    allowed: bool
    reason: str
    placed_here: bool  # this node is the unit's owner on the ring


def may_claim_unit(doc: Mapping[str, Any], self_id: str, ring: Ring, alive_ids: Collection[str],
                   now: float, *, holder_alive: Callable[[str], bool], in_flight: bool,
                   idle: bool, steal_after: float) -> UnitDecision:
    """Decide for one unit document (see the module table)."""
    key = unit_key(doc["video"], doc["unit"])
    placed_here = self_id in ring and ring.owner(key) == self_id
    if in_flight:
        return UnitDecision(False, "in_flight", placed_here)
    ok, why = state.claimable(doc, now, holder_alive)
    if not ok:
        return UnitDecision(False, why, placed_here)
    lease = doc.get("lease")
    holder = lease["holder"] if lease else None
    expired = lease is not None and lease["expires"] <= now
    decision = may_claim(key, self_id, ring, alive_ids, holder, expired,
                         holder_alive(holder) if holder else False, self_in_flight=in_flight)
    if decision.allowed:
        return UnitDecision(True, str(decision.reason), placed_here)
    if (idle and doc["state"] == state.PENDING and self_id in ring
            and now - doc.get("updated_at", now) >= steal_after):
        return UnitDecision(True, IDLE_STEAL, placed_here)
    return UnitDecision(False, str(decision.reason), placed_here)


def claim_order(decided: Iterable[tuple[Mapping[str, Any], UnitDecision]]) -> list[Mapping[str, Any]]:
    """The claimable units in the order to try them (see the module docstring)."""
    allowed = [(doc, d) for doc, d in decided if d.allowed]
    return [doc for doc, d in sorted(
        allowed, key=lambda x: (x[0]["unit"] != state.AUDIO, not x[1].placed_here,
                                x[0]["video"], x[0]["unit"]))]
