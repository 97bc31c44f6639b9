"""Wiring a node into the cluster: gossip membership -> ring -> who claims what.

* Membership (SWIM over UDP) tells who is alive; every change rebuilds the ring
  (``RingView.update``) and wakes the worker, so a dead holder's videos are
  claimed by the next node in their preference list without waiting for the lease.
* The worker asks :func:`ring.may_claim` before every claim CAS: the ring says who
  *should* work on a video, the lease and epoch in storage say who *may*.
* After an upload lands on a node that does not own the video, it tells the owner
  at once (``POST /v1/internal/wake``), the fast path; the owner's next scan would
  find it anyway.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from membership import ALIVE, Member, Membership
from ring import RingView, may_claim

from node.records import lifecycle

from node import log
from node.context import NodeContext

WAKE_TIMEOUT = 1.0


async def attach(ctx: NodeContext, nursery: trio.Nursery) -> None:
    cfg = ctx.cfg
    weights = {n.id: n.weight for n in cfg.nodes}
    spec = cfg.node(ctx.node_id)
    m = Membership(ctx.node_id, gossip_addr=spec.gossip_addr, http_addr=spec.http_addr,
                   cluster=cfg.cluster, key=cfg.cluster_key(),
                   seeds={n.id: n.gossip_addr for n in cfg.seed_nodes},
                   peers={n.id: n.gossip_addr for n in cfg.nodes},
                   config=cfg.membership, log=log.emit)
    view = RingView({ctx.node_id: weights.get(ctx.node_id, 1)})
    ctx.membership = m
    ctx.ring_view = view
    dead_since: dict[str, float] = {}

    def on_members(members: list[Member]) -> None:
        alive = {mm.id: weights.get(mm.id, 1) for mm in members if mm.state == ALIVE}
        alive[ctx.node_id] = weights.get(ctx.node_id, 1)
        for mm in members:
            if mm.state != ALIVE:
                dead_since.setdefault(mm.id, time.time())
            else:
                dead_since.pop(mm.id, None)
        if view.update(alive):
            r = view.ring
            log.info("ring_changed", version=r.version, members=sorted(r.members))
        ctx.worker.poke()

    m.add_listener(on_members)
    await nursery.start(m.serve)
    on_members(m.members())

    worker = ctx.worker

    def holder_alive(holder: str) -> bool:
        return holder in m.alive_ids()

    def should_claim(vid: str, rec: dict[str, Any]) -> bool:
        lease = rec.get("lease")
        holder = lease["holder"] if lease else None
        expired = lifecycle.lease_expired(rec, worker.clock())
        alive_ids = m.alive_ids()
        # a holder that took this video from us counts as alive (see Worker.deferring)
        holder_ok = bool(holder) and (holder in alive_ids or worker.deferring(vid))
        decision = may_claim(vid, ctx.node_id, view.ring, alive_ids, holder, expired, holder_ok,
                             self_in_flight=vid in worker.stats.jobs)
        if decision.allowed and holder and holder != ctx.node_id and not expired:
            log.info("handoff", video=vid, epoch=rec.get("epoch"), from_node=holder,
                     reason=str(decision.reason),
                     holder_dead_for=round(time.time() - dead_since[holder], 3) if holder in dead_since else None)
        return decision.allowed

    worker.should_claim = should_claim
    worker.holder_alive = holder_alive


def owner_of(ctx: NodeContext, vid: str) -> str | None:
    return ctx.ring_view.ring.owner(vid) if ctx.ring_view is not None else None


async def wake_owner(ctx: NodeContext, vid: str) -> None:
    """The fast path: tell the video's owner to look at the pending index now (best effort)."""
    owner = owner_of(ctx, vid)
    if owner is None or owner == ctx.node_id:
        ctx.worker.poke()
        return
    url = ctx.cfg.node(owner).url + "/v1/internal/wake"
    headers = {"Authorization": f"Bearer {ctx.token}"} if ctx.token else {}
    try:
        async with httpx.AsyncClient(timeout=WAKE_TIMEOUT) as client:
            await client.post(url, json={"video": vid}, headers=headers)
        log.info("owner_notified", video=vid, owner=owner)
    except httpx.HTTPError as e:
        log.warning("owner_notify_failed", video=vid, owner=owner, error=type(e).__name__)
        ctx.worker.poke()  # our own scan will apply the ring rules
