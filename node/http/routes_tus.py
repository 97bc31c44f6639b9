"""Resumable uploads: tus 1.0.0 at ``/v1/uploads`` (core, creation, creation-with-upload,
termination, checksum with sha1, expiration).  The tus upload id is the video id.

Every answer here carries ``Tus-Resumable: 1.0.0``; errors keep the contract's JSON shape with
the protocol's status (409 offset mismatch or locked, 412 version, 415 content type, 460 checksum
mismatch, 404 unknown, 410 terminated or expired): ``node.upload.errors`` refusals, mapped by
``node.http.errors.ANSWERS``.  Browsers' CORS preflights are answered by node.http.app.  The node's
``TusUploads`` is ``ctx.tus``.
"""

from __future__ import annotations

import email.utils
import uuid
from functools import wraps
from typing import Any, AsyncIterator, Callable

import trio

from quart import Response, request

from node.records import layout

from node import log
from node.http.routes_videos import clean_filename
from node.http.app import require_token
from node.context import NodeContext
from node.http.errors import ApiError, upload_answer, upload_error
from node.upload.errors import BeyondUploadLength, DeferredLengthUnsupported, UploadRefused
from node.upload.tus import (CHECKSUM_ALGORITHMS, EXTENSIONS, OFFSET_CONTENT_TYPE, TUS_VERSION,
                             check_content_type, check_version, parse_checksum, parse_int, parse_length,
                             parse_metadata)



def _valid(vid: str) -> str:
    if not layout.valid_id(vid):
        raise ApiError(404, "not_found", "no such upload")
    return vid


def _expires(rec: dict) -> dict[str, str]:
    up = rec.get("upload")
    if not up:
        return {}
    return {"Upload-Expires": email.utils.formatdate(up["expires_at"], usegmt=True)}


def _offset(rec: dict) -> int:
    up = rec.get("upload")
    return up["offset"] if up else (rec.get("size") or 0)


def _versioned() -> None:
    try:
        check_version(request.headers.get("Tus-Resumable"))
    except UploadRefused as e:
        raise upload_error(e) from None


async def _body() -> AsyncIterator[bytes]:
    async for chunk in request.body:
        if chunk:
            yield chunk


DRAIN_SECONDS = 120.0


def drains_body(fn: Callable) -> Callable:
    """On a refusal, read (and drop) what the client still sends before answering.

    Clients like tuspy and http.client send the whole body before they read the answer; a
    handler that answers early without reading it would leave both sides waiting (our body
    backpressure stops reading the socket while unread bytes queue).
    """
    @wraps(fn)
    async def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return await fn(*a, **kw)
        except Exception:
            with trio.move_on_after(DRAIN_SECONDS):
                async for _ in request.body:
                    pass
            raise
    return wrapper


def register(app, ctx: NodeContext) -> None:
    max_size = ctx.cfg.limits.max_upload_bytes

    discovery = {"Tus-Version": TUS_VERSION, "Tus-Extension": ",".join(EXTENSIONS),
                 "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS), "Tus-Max-Size": str(max_size)}

    @app.after_request_under("/v1/uploads")
    async def _tus_headers(resp: Response) -> Response:
        resp.headers["Tus-Resumable"] = TUS_VERSION
        resp.headers.setdefault("Cache-Control", "no-store")
        if request.method == "OPTIONS" and resp.status_code == 204:  # node.http.app's preflight too
            for name, value in discovery.items():
                resp.headers.setdefault(name, value)
        return resp

    @app.route("/v1/uploads", methods=["OPTIONS"])
    @app.route("/v1/uploads/<vid>", methods=["OPTIONS"])
    async def tus_options(vid: str | None = None):
        """Discovery (tus).  A browser's CORS preflight is answered by node.http.app first; the
        discovery headers are added to that answer too (``_tus_headers``)."""
        return Response("", status=204, headers=discovery)

    @app.post("/v1/uploads")
    @drains_body
    @require_token(ctx)
    async def tus_create():
        _versioned()
        try:
            if request.headers.get("Upload-Defer-Length"):
                raise DeferredLengthUnsupported("send Upload-Length; deferred length is not supported")
            length = parse_length(request.headers.get("Upload-Length"), max_size)
            meta = parse_metadata(request.headers.get("Upload-Metadata"))
            rec = await ctx.tus.create(length, meta, clean_filename(meta.get("filename") or meta.get("name")))
            vid = rec["id"]
            ctx.metrics.events.tus_uploads_created.inc()
            log.info("tus_created", video=vid, length=length)
            headers = {"Location": f"/v1/uploads/{vid}", **_expires(rec)}
            # creation-with-upload: a body of the offset content type is the first PATCH
            ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if length > 0 and ctype == OFFSET_CONTENT_TYPE:
                cl = request.content_length
                if cl is not None and cl > length:
                    raise BeyondUploadLength(f"the body goes beyond Upload-Length ({length})")
                rec = await ctx.tus.patch(vid, offset=0, body=_body(),
                                          checksum=parse_checksum(request.headers.get("Upload-Checksum")),
                                          request=uuid.uuid4().hex[:12], content_length=cl)
                headers.update(_expires(rec))
        except UploadRefused as e:
            raise upload_error(e) from None
        headers["Upload-Offset"] = str(_offset(rec))
        return Response("", status=201, headers=headers)

    @app.route("/v1/uploads/<vid>", methods=["HEAD"])
    async def tus_head(vid: str):
        _valid(vid)
        _versioned()
        try:
            off, length, _rec = await ctx.tus.status(vid)
        except UploadRefused as e:
            return Response("", status=upload_answer(e)[0], headers={"Cache-Control": "no-store"})
        return Response("", status=200, headers={"Upload-Offset": str(off), "Upload-Length": str(length),
                                                 "Cache-Control": "no-store", **_expires(_rec)})

    @app.route("/v1/uploads/<vid>", methods=["PATCH"])
    @drains_body
    @require_token(ctx)
    async def tus_patch(vid: str):
        _valid(vid)
        _versioned()
        try:
            check_content_type(request.headers.get("Content-Type"))
            offset = parse_int(request.headers.get("Upload-Offset"), "Upload-Offset")
            checksum = parse_checksum(request.headers.get("Upload-Checksum"))
            rec = await ctx.tus.patch(vid, offset=offset, body=_body(), checksum=checksum,
                                      request=uuid.uuid4().hex[:12], content_length=request.content_length)
            off = _offset(rec)
        except UploadRefused as e:
            raise upload_error(e) from None
        ctx.metrics.events.tus_patches.inc()
        ctx.metrics.events.upload_bytes.inc(max(0, off - offset))
        return Response("", status=204, headers={"Upload-Offset": str(off), **_expires(rec)})

    @app.route("/v1/uploads/<vid>", methods=["DELETE"])
    @require_token(ctx)
    async def tus_delete(vid: str):
        _valid(vid)
        _versioned()
        try:
            await ctx.tus.terminate(vid)
        except UploadRefused as e:
            raise upload_error(e) from None
        ctx.metrics.events.tus_terminated.inc()
        return Response("", status=204)
