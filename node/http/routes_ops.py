"""Operations surface: /healthz, /readyz, /metrics, /v1/node and the cluster views.

``/metrics`` is the Prometheus text of the node's own registry (node.metrics; every metric is
listed in docs/operations.md)."""

from __future__ import annotations

import dataclasses
import time

from quart import Response, jsonify, request

from node.records import layout

from node import log, metrics as node_metrics, peer_auth
from node.http.app import require_token
from node.context import NodeContext
from node.http.errors import ApiError
from node.http.routes_playback import check_peer

VERSION = "0.1.0"


def node_info(ctx: NodeContext) -> dict:
    w = ctx.worker.stats
    info = {
        "id": ctx.node_id,
        "version": VERSION,
        "uptime": round(time.time() - ctx.started_at, 3),
        "http_addr": ctx.cfg.node(ctx.node_id).http_addr,
        "storage_ok": ctx.storage_ok,
        "tasks_in_flight": len(w.jobs),
        "jobs": [dataclasses.asdict(j) for j in w.jobs.values()],
        "worker": {k: v for k, v in dataclasses.asdict(w).items() if k != "jobs"},
        "counters": ctx.metrics.events.values(),
        "cache": ctx.cache.statistics() if ctx.cache is not None else None,
        "webhooks": dataclasses.asdict(ctx.webhooks.statistics()) if ctx.webhooks is not None else None,
    }
    if info["cache"] is not None and dataclasses.is_dataclass(info["cache"]):
        info["cache"] = dataclasses.asdict(info["cache"])
    return info


def register(app, ctx: NodeContext) -> None:
    @app.get("/healthz")
    async def healthz():
        return jsonify({"ok": True, "node": ctx.node_id})

    @app.get("/readyz")
    async def readyz():
        joined = ctx.membership.joined() if ctx.membership is not None else True
        ok = ctx.storage_ok and joined
        resp = jsonify({"ready": ok, "storage": ctx.storage_ok, "joined": joined, "node": ctx.node_id})
        resp.status_code = 200 if ok else 503
        if not ok:
            resp.headers["Retry-After"] = "1"
        return resp

    @app.get("/metrics")
    async def metrics():
        return Response(ctx.metrics.text(), content_type=node_metrics.CONTENT_TYPE)

    @app.get("/v1/node")
    async def node():
        return jsonify(node_info(ctx))

    @app.get("/v1/cluster/members")
    async def members():
        if ctx.membership is None:
            ms = [{"id": n.id, "gossip_addr": n.gossip_addr, "http_addr": n.http_addr,
                   "state": "alive" if n.id == ctx.node_id else "unknown", "incarnation": 0,
                   "since": ctx.started_at} for n in ctx.cfg.nodes]
        else:
            ms = [dataclasses.asdict(m) for m in ctx.membership.members()]
        return jsonify({"self": ctx.node_id, "members": ms})

    @app.get("/v1/cluster/ring")
    async def ring():
        if ctx.ring_view is None:
            raise ApiError(503, "no_ring", "this node runs without a ring")
        return jsonify(ctx.ring_view.ring.to_dict())

    @app.get("/v1/cluster/owner/<vid>")
    async def owner(vid: str):
        if not layout.valid_id(vid):
            raise ApiError(404, "not_found", "not a video id")
        if ctx.ring_view is None:
            raise ApiError(503, "no_ring", "this node runs without a ring")
        r = ctx.ring_view.ring
        out = {"video": vid, "owner": r.owner(vid), "preference": r.preference(vid),
               "ring_version": r.version}
        v = await ctx.videos.get(vid)
        if v is not None:
            out["state"] = v.doc["state"]
            out["epoch"] = v.doc.get("epoch")
            out["lease"] = v.doc.get("lease")
        return jsonify(out)

    @app.post("/v1/internal/wake")
    async def wake():
        """Another node accepted an upload this node owns: scan the pending index now.  A hop
        between nodes: proven with the cluster key (X-Shoal-Hop), like every /v1/internal route."""
        check_peer(ctx, request.headers.get(peer_auth.HEADER), "POST", request.path)
        ctx.worker.poke()
        return jsonify({"ok": True})

    @app.post("/v1/debug/gossip-block")
    @require_token(ctx)
    async def gossip_block():
        """Fault injection for tests and chaos: drop gossip to and from these node ids."""
        if ctx.membership is None:
            raise ApiError(503, "no_membership", "this node runs without gossip")
        body = await request.get_json(force=True, silent=True) or {}
        ids = body.get("ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, "bad_ids", 'send {"ids": ["n2", ...]}')
        ctx.membership.set_blocked(ids)
        return jsonify({"blocked": sorted(ids)})

    log.debug("routes_registered", count=len(list(app.url_map.iter_rules())))
