"""`POST /v1/videos`, `GET /v1/videos`, `GET/DELETE /v1/videos/<id>`."""

from __future__ import annotations

import hmac
import re
from typing import AsyncIterator

import storage
from quart import jsonify, request

from node.records import layout, lifecycle

from node import log
from node.http.app import require_token
from node.context import NodeContext
from node.http.errors import ApiError
from node.http.routes_playback import evict_locally
from node.process.failure import public_message
from node.records.lifecycle import Refused
from node.upload import ingest

MAX_IDEMPOTENCY_KEY = 255
MAX_FILENAME = 255
# What one GET /v1/videos may cost (docs/security.md, "Amplification"): records read per request.
LIST_SCAN_TOKEN = 2000  # token holders: limit up to 1000
LIST_SCAN_ANONYMOUS = 100  # anonymous: at most 100 record reads + 1 catalog page per request
LIST_LIMIT_ANONYMOUS = 50
LIST_STATES_ANONYMOUS = (None, "ready")  # other state filters need the token
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # an error code as node.process.failure writes them


def clean_filename(raw: str | None) -> str | None:
    if not raw:
        return None
    name = "".join(ch for ch in raw if ch.isprintable() and ch not in "/\\").strip()
    return name[:MAX_FILENAME] or None


def valid_video_id(vid: str) -> str:
    if not layout.valid_id(vid):
        raise ApiError(404, "not_found", "no such video")
    return vid


def view(ctx: NodeContext, rec: dict) -> dict:
    """The record as the API shows it; its error message scrubbed again at output (no path,
    traceback or exception name), also for records written by an older version."""
    out = lifecycle.public_view(rec)
    out["error"] = public_error(out["error"])
    if ctx.ring_view is not None:
        owner = ctx.ring_view.ring.owner(rec["id"])
        out["owner"] = owner if owner is not None else out["owner"]
    return out


def public_error(error: object) -> dict | None:
    """A record's ``error`` as shown: ``{code, message}`` with the message through
    node.process.failure.public_message; anything else a record may hold becomes a generic one."""
    if not error:
        return None
    if not isinstance(error, dict):
        return {"code": "error", "message": public_message(str(error))}
    code = error.get("code")
    code = code if isinstance(code, str) and _CODE.fullmatch(code) else "error"
    return {"code": code, "message": public_message(str(error.get("message") or ""))}


def bearer_ok(ctx: NodeContext) -> bool:
    """The request carries this cluster's token (False when the cluster has none: `auth: none`)."""
    auth = request.headers.get("Authorization", "")
    return bool(ctx.token) and auth.startswith("Bearer ") and hmac.compare_digest(
        auth[7:].strip().encode(), ctx.token.encode())


def register(app, ctx: NodeContext) -> None:
    limits = ctx.cfg.limits

    @app.post("/v1/videos")
    @require_token(ctx)
    async def upload_video():
        length = request.content_length
        if length is None:
            raise ApiError(411, "length_required", "send the file with a Content-Length header "
                           "(or use the resumable upload at /v1/uploads)")
        if length > limits.max_upload_bytes:
            raise ApiError(413, "too_large", f"the file is {length} bytes; this cluster accepts at most "
                           f"{limits.max_upload_bytes} bytes")
        if length == 0:
            raise ApiError(400, "empty_body", "the request body is empty; send the video file as the body")
        idem = request.headers.get("Idempotency-Key")
        if idem is not None and not (0 < len(idem) <= MAX_IDEMPOTENCY_KEY):
            raise ApiError(400, "bad_idempotency_key", f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters")
        filename = clean_filename(request.headers.get("X-Filename"))

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in request.body:
                yield chunk

        # upload refusals and storage errors are answered by the table in node.http.errors
        res = await ingest(ctx.videos, chunks(), content_length=length, filename=filename,
                           idempotency_key=idem, part_size=ctx.cfg.storage.part_size,
                           parts_in_flight=ctx.cfg.storage.parts_in_flight)
        if res.created:
            ctx.metrics.events.uploads_accepted.inc()
            ctx.metrics.events.upload_bytes.inc(length)
            log.info("upload_accepted", video=res.record["id"], size=length, idempotency_key=bool(idem))
            # the owner (maybe us) looks at once
            if ctx.owners is not None:
                ctx.owners.notify(res.record["id"])
            else:  # a test's node without gossip
                ctx.worker.poke()
            status = 201
        else:
            ctx.metrics.events.uploads_replayed.inc()
            status = 200
        resp = jsonify(view(ctx, res.record))
        resp.status_code = status
        resp.headers["Location"] = f"/v1/videos/{res.record['id']}"
        return resp

    @app.get("/v1/videos")
    async def list_videos():
        state = request.args.get("state")
        if state is not None and state not in lifecycle.STATES:
            raise ApiError(400, "bad_state", f"state must be one of {', '.join(lifecycle.STATES)}")
        privileged = bearer_ok(ctx)
        if not privileged and ctx.token and state not in LIST_STATES_ANONYMOUS:
            raise ApiError(401, "unauthorized", f"listing videos by state {state!r} needs "
                           "'Authorization: Bearer <token>'; anonymous listings show all or 'ready'")
        max_limit = 1000 if privileged else LIST_LIMIT_ANONYMOUS
        try:
            limit = int(request.args.get("limit", "50"))
        except ValueError:
            raise ApiError(400, "bad_limit", "limit must be an integer") from None
        if not 1 <= limit <= max_limit:
            raise ApiError(400, "bad_limit", f"limit must be between 1 and {max_limit}"
                           + ("" if privileged else " (up to 1000 with the token)"))
        cursor = request.args.get("cursor") or None
        if cursor is not None and not layout.valid_id(cursor):
            raise ApiError(400, "bad_cursor", "cursor is not one this API returned")
        recs, nxt = await ctx.videos.list(
            state=state, limit=limit, cursor=cursor,
            scan_limit=LIST_SCAN_TOKEN if privileged else LIST_SCAN_ANONYMOUS)
        # a listing leaves out each video's chunks (one entry per unit): its progress stays
        return jsonify({"videos": [{k: v for k, v in view(ctx, r).items() if k != "chunks"}
                                   for r in recs], "next": nxt})

    @app.get("/v1/videos/<vid>")
    async def get_video(vid: str):
        valid_video_id(vid)
        v = await ctx.videos.get(vid)
        if v is None:
            raise ApiError(404, "not_found", "no such video")
        return jsonify(view(ctx, v.doc))

    @app.delete("/v1/videos/<vid>")
    @require_token(ctx)
    async def delete_video(vid: str):
        valid_video_id(vid)
        try:
            rec = await ctx.videos.delete(vid)
            # this node stops playing it at once; the others when told, or within 1 s (their memo)
            evict_locally(ctx, vid)
            if ctx.cache is not None:
                ctx.cache.announce_deleted(vid)
        except storage.NotFound:
            raise ApiError(404, "not_found", "no such video") from None
        except Refused as e:
            if e.code == "already_deleted":
                v = await ctx.videos.get(vid)
                resp = jsonify(view(ctx, v.doc if v else {"id": vid, "state": "deleted"}))
                resp.status_code = 202
                return resp
            raise  # 409 with the refusal's code (node.http.errors)
        resp = jsonify(view(ctx, rec))
        resp.status_code = 202
        return resp
