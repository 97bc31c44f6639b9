"""HLS playback: `GET|HEAD /v1/videos/<id>/hls/<path>`.

Only the epoch that the `ready` commit names is ever read, so nothing partial is
visible.  Objects are immutable once committed: the ETag is the stored
object's, identical on every node, and segments are cacheable forever.
"""

from __future__ import annotations

import time

import storage
from quart import Response, request

from node.records import layout, lifecycle

from node.play import segcache
from node.context import NodeContext
from node.http.errors import ApiError
from node.http.fastlane import Head, object_plan

READY_CACHE_TTL = 1.0  # seconds a ready record is trusted before re-reading (bounds delete lag)
READY_CACHE_MAX = 10_000


class ReadyRecords:
    """A small TTL cache of ready records: playback re-reads storage at most once a second.

    :meth:`current` (both playback paths use it) reads once per video at a time: while one reader renews
    an expired record, the others keep the record of a moment ago instead of all waiting on
    storage together.  Every answer is still from a record read at most ``READY_CACHE_TTL``
    before the request or during it, so a deleted video stops playing within that second.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, dict]] = {}
        self._renewing: set[str] = set()

    def get(self, vid: str) -> dict | None:
        hit = self._items.get(vid)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        return None

    def put(self, vid: str, rec: dict) -> None:
        if len(self._items) >= READY_CACHE_MAX:
            self._items.clear()
        self._items[vid] = (time.monotonic() + READY_CACHE_TTL, rec)

    def forget(self, vid: str) -> None:
        self._items.pop(vid, None)

    async def current(self, ctx: NodeContext, vid: str) -> dict:
        """The ready record; raises as :func:`ready_record` does."""
        rec = self.get(vid)
        if rec is not None:
            return rec
        hit = self._items.get(vid)
        if vid in self._renewing and hit is not None:
            return hit[1]  # someone is reading it now, after it expired
        self._renewing.add(vid)
        try:
            return await ready_record(ctx, self, vid)
        except (ApiError, storage.StorageError):
            self.forget(vid)
            raise
        finally:
            self._renewing.discard(vid)


async def ready_record(ctx: NodeContext, cache: ReadyRecords, vid: str) -> dict:
    if not layout.valid_id(vid):
        raise ApiError(404, "not_found", "no such video")
    rec = cache.get(vid)
    if rec is not None:
        return rec
    v = await ctx.videos.get(vid)
    if v is None or v.doc["state"] == lifecycle.DELETED:
        raise ApiError(404, "not_found", "no such video")
    if v.doc["state"] != lifecycle.READY:
        raise ApiError(409, "not_ready", f"the video is {v.doc['state']}; playback starts when it is ready",
                       state=v.doc["state"])
    cache.put(vid, v.doc)
    return v.doc


async def fetch_object(ctx: NodeContext, vid: str, key: str) -> tuple[bytes, str]:
    """The bytes of a committed object: from the owner's cache when there is one, else storage."""
    if ctx.cache is not None:
        return await ctx.cache.fetch(vid, key)
    ctx.count("storage_reads")
    return await ctx.store.get(key)


def object_response(body: bytes, etag: str, *, is_segment: bool) -> Response:
    """A committed object as HTTP, answered as node.http.fastlane.object_plan says (the fast lane's
    answers come from the same plan)."""
    head = Head(request.method, request.path, {k.lower(): v for k, v in request.headers.items()
                                               if k.lower() in ("range", "if-none-match")})
    p = object_plan(head, kind="playback", size=len(body), etag=etag, is_segment=is_segment)
    headers = [(k, v) for k, v in p.headers if k != "Content-Length"]  # Quart sets it from the body
    resp = Response(p.body if p.body is not None else body[p.start:p.start + p.length],
                    status=p.status, headers=headers)
    if request.method == "HEAD" and p.body is None:
        resp.content_length = int(dict(p.headers)["Content-Length"])  # what a GET would send
    return resp


def register(app, ctx: NodeContext) -> None:
    records = ctx.ready_records = ReadyRecords()  # shared with the fast lane (node.http.fastlane)

    @app.route("/v1/videos/<vid>/hls/<path:rest>", methods=["GET", "HEAD"])
    async def hls(vid: str, rest: str):
        rec = await records.current(ctx, vid)
        if not layout.valid_hls_path(rest):
            raise ApiError(404, "not_found", "no such playlist or segment")
        key = layout.out_prefix(vid, rec["ready_epoch"]) + rest
        try:
            body, etag = await fetch_object(ctx, vid, key)
        except storage.NotFound:
            raise ApiError(404, "not_found", "no such playlist or segment") from None
        is_segment = rest.endswith(".ts")
        ctx.count("hls_segments_served" if is_segment else "hls_playlists_served")
        return object_response(body, etag, is_segment=is_segment)

    @app.get(segcache.INTERNAL_PREFIX + "/<vid>/<path:rest>")
    async def internal_object(vid: str, rest: str):
        """Node-to-node: a committed HLS object from this node's cache (the owner's side of a hop).

        Serves only ``out/<epoch>/<hls path>`` keys, read-only, and never hops onward.
        """
        key = segcache.internal_key(vid, rest)
        if key is None or ctx.cache is None:
            raise ApiError(404, "not_found", "no such object")
        try:
            body, etag = await ctx.cache.serve_peer(key)
        except storage.NotFound:
            raise ApiError(404, "not_found", "no such object") from None
        ctx.count("hops_served")
        return Response(body, status=200, headers={"ETag": etag, "Content-Type": "application/octet-stream"})
