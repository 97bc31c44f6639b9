"""HLS playback: `GET|HEAD /v1/videos/<id>/hls/<path>`, and the node-to-node endpoints of playback:
`GET /v1/internal/objects/<id>/out/<epoch>/<path>` (the owner's side of a hop) and
`POST /v1/internal/evict` (drop a deleted video's cached objects).

Only the epoch that the `ready` commit names is ever read, so nothing partial is
visible.  Objects are immutable once committed: the ETag is the stored
object's, identical on every node, and segments are cacheable forever.  What may be
answered and how is node.play's (the ready-record memo, the answer plan); this module maps it
to HTTP, as the fast lane (node.http.fastlane) does for cache hits.

Internal endpoints need ``X-Shoal-Hop`` signed with the cluster key when the cluster has one
(node.peer_auth): without it 401 ``unauthorized``, with a wrong one 403 ``forbidden``.
"""

from __future__ import annotations

import json
import time

import storage
from quart import Response, request

from node.records import layout

from node import log, peer_auth, play
from node.play import segcache
from node.context import NodeContext
from node.http import edge
from node.http.errors import ApiError, from_play_error
from storage.http1 import RequestHead


def check_peer(ctx: NodeContext, header: str | None, method: str, path: str) -> None:
    """Raise the API error of an internal request without a valid proof of the cluster key."""
    try:
        peer_auth.check(getattr(ctx, "cluster_key", None), header, method, path, time.time())
    except peer_auth.PeerAuthError as e:
        ctx.metrics.events.internal_requests_refused.inc()
        log.warning("internal_request_refused", path=path, reason=str(e))
        raise from_play_error(e) from None


def playback_class(ctx: NodeContext, vid: str, key: str) -> str:
    """The route class of a playback read of ``key`` (node.http.edge), before it is fetched."""
    if ctx.cache is None:
        return "playback_miss"
    if ctx.cache.owner_of(vid) != ctx.node_id:
        return "playback_hop"
    return "playback_hit" if ctx.cache.holds(key) else "playback_miss"


async def fetch_object(ctx: NodeContext, vid: str, key: str) -> tuple[bytes, str]:
    """The bytes of a committed object: from the owner's cache when there is one, else storage."""
    if ctx.cache is not None:
        return await ctx.cache.fetch(vid, key)
    ctx.metrics.events.storage_reads.inc()
    return await ctx.store.get(key)


def object_response(body: bytes, etag: str, *, path: str) -> Response:
    """The committed object at output ``path`` as HTTP, answered as node.play.object_plan says
    (the fast lane's answers come from the same plan)."""
    head = RequestHead(request.method, request.path, {k.lower(): v for k, v in request.headers.items()
                                                      if k.lower() in ("range", "if-none-match")})
    p = play.object_plan(head, kind="playback", size=len(body), etag=etag, path=path)
    headers = [(k, v) for k, v in p.headers if k != "Content-Length"]  # Quart sets it from the body
    resp = Response(p.body if p.body is not None else body[p.start:p.start + p.length],
                    status=p.status, headers=headers)
    if request.method == "HEAD" and p.body is None:
        resp.content_length = int(dict(p.headers)["Content-Length"])  # what a GET would send
    return resp


def register(app, ctx: NodeContext) -> None:
    records = ctx.ready_records  # shared with the fast lane (node.http.fastlane)

    async def output(vid: str, rest: str, missing: str) -> Response:
        try:
            rec = await records.current(ctx, vid)
        except play.PlayError as e:
            raise from_play_error(e) from None
        if not layout.valid_output_path(rest) or not play.has_output(rec, rest):
            raise ApiError(404, "not_found", missing)
        key = layout.hls_object_key(vid, rec, rest)
        request.scope[edge.SCOPE_KEY] = playback_class(ctx, vid, key)
        try:
            body, etag = await fetch_object(ctx, vid, key)
        except storage.NotFound:
            raise ApiError(404, "not_found", missing) from None
        play.count_served(ctx.metrics.events, rest)
        return object_response(body, etag, path=rest)

    @app.route("/v1/videos/<vid>/hls/<path:rest>", methods=["GET", "HEAD"])
    async def hls(vid: str, rest: str):
        if not layout.valid_hls_path(rest):
            rest = ""  # poster.jpg is not under hls/: 404 like any other name
        return await output(vid, rest, "no such playlist or segment")

    @app.route("/v1/videos/<vid>/poster.jpg", methods=["GET", "HEAD"])
    async def poster(vid: str):
        """The poster image (node/process/poster.py); 404 for a video committed without one."""
        return await output(vid, layout.POSTER, "this video has no poster")

    @app.get(segcache.INTERNAL_PREFIX + "/<vid>/<path:rest>")
    async def internal_object(vid: str, rest: str):
        """Node-to-node: a committed HLS object from this node's cache (the owner's side of a hop).

        Serves only ``out/<ready epoch>/<hls path>`` keys of a ready, not deleted video,
        read-only, and never hops onward.
        """
        check_peer(ctx, request.headers.get(peer_auth.HEADER), request.method, request.path)
        if ctx.cache is None:
            raise ApiError(404, "not_found", "no such object")
        try:
            key = await play.internal_object_key(ctx, records, vid, rest)
        except play.PlayError as e:
            raise from_play_error(e) from None
        try:
            body, etag = await ctx.cache.serve_peer(key)
        except storage.NotFound:
            raise ApiError(404, "not_found", "no such object") from None
        ctx.metrics.events.hops_served.inc()
        return Response(body, status=200, headers={"ETag": etag, "Content-Type": "application/octet-stream"})

    @app.post(segcache.EVICT_PATH)
    async def internal_evict():
        """Node-to-node: a video was deleted; forget its ready record and drop its cached objects."""
        check_peer(ctx, request.headers.get(peer_auth.HEADER), "POST", request.path)
        length = request.content_length
        if length is None or length > 1024:
            raise ApiError(400, "bad_request", 'the body must be {"video": "<id>"} with a Content-Length')
        raw = await request.get_data()  # at most 1 KiB
        try:
            vid = json.loads(raw[:1024])["video"]
        except (ValueError, KeyError, TypeError):
            vid = None
        if not isinstance(vid, str) or not layout.valid_id(vid):
            raise ApiError(400, "bad_request", 'the body must be {"video": "<id>"}')
        evict_locally(ctx, vid)
        return Response(b"", status=204)


def evict_locally(ctx: NodeContext, vid: str) -> None:
    """This node stops answering ``vid`` at once: its ready record and cached objects are dropped."""
    ctx.ready_records.forget(vid)
    if ctx.cache is not None:
        ctx.cache.evict_video(vid)


