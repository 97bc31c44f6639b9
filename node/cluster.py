"""This node in the cluster: gossip membership -> ring -> who claims what.

* :class:`Cluster` holds the membership and the ring built from it: every membership change
  rebuilds the ring (``RingView.update``) and calls the listeners (the worker's ``poke``), so a
  dead holder's videos are claimed by the next node in their preference list without waiting
  for the lease.
* :class:`RingClaims` is the worker's claim policy (``node.process.worker.ClaimPolicy``): it asks
  :func:`ring.may_claim` before every claim CAS.  The ring says who *should* work on a video;
  the lease and epoch in storage say who *may*.

Both are built by ``node.compose`` and handed to the parts that use them (the upload's wake of
the owner, ``node.upload.landing.OwnerNotifier``, is given ``Cluster.owner_of``).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import trio

from membership import ALIVE, Member, Membership
from ring import RingView, may_claim

from node import log
from node.chunks import placement
from node.config import Config
from node.records import lifecycle

CHUNK_STEAL_AFTER_LEASES = 1.0  # an idle node takes a unit left pending this many lease lengths

DEAD_SINCE_MAX = 10_000  # nodes remembered as dead (for the handoff log line)


class Cluster:
    """The membership and the ring of alive members it gives; see the module docstring."""

    def __init__(self, cfg: Config, node_id: str, membership: Membership, *,
                 wall: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.membership = membership
        self._weights = {n.id: n.weight for n in cfg.nodes}
        self.ring_view = RingView({node_id: self._weights.get(node_id, 1)})
        self._wall = wall
        self._dead_since: dict[str, float] = {}
        self._listeners: list[Callable[[], None]] = []
        self._alive_addrs: dict[str, str] = {}

    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` after every membership change (the ring is already rebuilt)."""
        self._listeners.append(callback)

    def alive(self, node_id: str) -> bool:
        return node_id in self.membership.alive_ids()

    def alive_addrs(self) -> dict[str, str]:
        """The HTTP address ("host:port") of every other alive member, as of the last change."""
        return dict(self._alive_addrs)

    def owner_of(self, vid: str) -> str | None:
        return self.ring_view.ring.owner(vid)

    def dead_for(self, node_id: str) -> float | None:
        """Seconds since gossip first saw ``node_id`` not alive; None while it is alive."""
        since = self._dead_since.get(node_id)
        return None if since is None else round(self._wall() - since, 3)

    def members_changed(self, members: list[Member]) -> None:
        """The membership listener: rebuild the ring, note who died when, tell the listeners."""
        alive = {m.id: self._weights.get(m.id, 1) for m in members if m.state == ALIVE}
        alive[self.node_id] = self._weights.get(self.node_id, 1)
        self._alive_addrs = {m.id: m.http_addr for m in members if m.state == ALIVE and m.id != self.node_id}
        for m in members:
            if m.state != ALIVE:
                if len(self._dead_since) < DEAD_SINCE_MAX:
                    self._dead_since.setdefault(m.id, self._wall())
            else:
                self._dead_since.pop(m.id, None)
        if self.ring_view.update(alive):
            r = self.ring_view.ring
            log.info("ring_changed", version=r.version, members=sorted(r.members))
        for callback in self._listeners:
            callback()

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run gossip; the ring follows it.  Started once the membership is bound and joining."""
        self.membership.add_listener(self.members_changed)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.membership.serve)
            self.members_changed(self.membership.members())
            task_status.started()

    async def leave(self) -> None:
        await self.membership.leave()


class RingClaims:
    """The claim policy of a node in a cluster: the ring's say (:func:`ring.may_claim`)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def holder_alive(self, holder: str) -> bool:
        return self._cluster.alive(holder)

    def should_claim(self, vid: str, rec: lifecycle.Record, *, now: float, deferring: bool,
                     in_flight: bool) -> bool:
        c = self._cluster
        lease = rec.get("lease")
        holder = lease["holder"] if lease else None
        expired = lifecycle.lease_expired(rec, now)
        alive_ids = c.membership.alive_ids()
        # a holder that took this video from us counts as alive (see Worker.deferring)
        holder_ok = bool(holder) and (holder in alive_ids or deferring)
        decision = may_claim(vid, c.node_id, c.ring_view.ring, alive_ids, holder, expired, holder_ok,
                             self_in_flight=in_flight)
        if decision.allowed and holder and holder != c.node_id and not expired:
            log.info("handoff", video=vid, epoch=rec.get("epoch"), from_node=holder,
                     reason=str(decision.reason), holder_dead_for=c.dead_for(holder))
        return decision.allowed

    def should_claim_unit(self, doc: dict[str, Any], *, now: float, in_flight: bool,
                          idle: bool, deferring: bool) -> bool:
        """A unit of a chunked video: the ring by the unit's key (node/chunks/placement.py);
        a holder that took the unit from us lately counts as alive (``deferring``)."""
        c = self._cluster
        alive_ids = c.membership.alive_ids()
        decision = placement.may_claim_unit(
            doc, c.node_id, c.ring_view.ring, alive_ids, now,
            holder_alive=lambda h: deferring or h in alive_ids, in_flight=in_flight, idle=idle,
            steal_after=CHUNK_STEAL_AFTER_LEASES * c.cfg.timing.lease_seconds)
        return decision.allowed
