"""The API description: an OpenAPI 3.1 document of every public route, served at
``GET /v1/openapi.json``.

:func:`document` builds it (pure: no I/O, no config, so every node serves the same bytes);
:func:`register` serves it.  docs/api.md stays the contract of record; this is its machine
readable face.  Invariant, held by tests/unit/node/http/test_openapi.py against the app's real
url_map and the fast lane's route table: every (path, method) the node serves outside
``/v1/internal/`` is documented here, every documented one is served, every error response of a
body-carrying method references ``#/components/schemas/Error`` (the contract's
``{"error": {"code", "message", ...}}``), and the document validates as OpenAPI 3.1.

How the document is built, so that it stays short and uniform:

- each operation lists its own error answers with :func:`errors`: status -> the codes it may
  carry (an ``enum`` on ``error.code``); every operation also gets the edge's refusals (400
  ``bad_request`` / ``bad_framing``, answered before any route) and 500 ``internal_error``;
- every ``GET`` gets its ``HEAD`` twin (same statuses and headers, no body), and every path an
  ``OPTIONS`` operation (the CORS preflight of node.http.edge, or Quart's ``Allow`` answer),
  except the tus paths whose ``OPTIONS`` is tus discovery (:func:`_with_head_and_options`);
- HLS's ``<path:rest>`` is written as the three shapes node.records.layout accepts (master
  playlist, rendition playlist, segment), since an OpenAPI path parameter holds no ``/``.

Internal routes (``/v1/internal/*``: hops between nodes, proven with the cluster key) are left
out on purpose and the document's description says so.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from quart import Response

from node.context import NodeContext
from node.http import edge
from node.http.routes_ops import VERSION
from node.http.routes_videos import LIST_LIMIT_ANONYMOUS, MAX_IDEMPOTENCY_KEY
from node.records import layout, lifecycle
from node.upload.tus import CHECKSUM_ALGORITHMS, EXTENSIONS, MAX_METADATA, OFFSET_CONTENT_TYPE, TUS_VERSION

PATH = "/v1/openapi.json"
INTERNAL_PREFIX = "/v1/internal/"  # not described (see the module doc)
ERROR_REF = "#/components/schemas/Error"
EDGE_400 = ("bad_request", "bad_framing")  # refused by the HTTP edge before any route
EXAMPLE_ID = "aaaaaaaaaaaaaaaaaaaaaaaaaa"  # a well-formed video id (26 of [a-z2-7])

Json = dict[str, Any]


# ---- small builders ---------------------------------------------------------------------------

def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error_schema(codes: tuple[str, ...], fields: Json | None = None) -> Json:
    """``Error`` narrowed to ``codes``, with ``fields`` (required) beside code and message."""
    if not codes:
        return {"$ref": ERROR_REF}
    inner: Json = {"properties": {"code": {"enum": list(codes)}, **(fields or {})}}
    if fields:
        inner["required"] = list(fields)
    return {"allOf": [{"$ref": ERROR_REF}, {"properties": {"error": inner}}]}


WHY = {400: "Bad request", 401: "No bearer token", 403: "Wrong bearer token", 404: "Not found",
       405: "Method not allowed", 409: "Conflict with the video's or upload's state", 410: "Gone",
       411: "Content-Length required", 412: "Tus-Resumable missing or unsupported",
       413: "Too large", 415: "Wrong Content-Type", 416: "Range not satisfiable",
       460: "Checksum mismatch (tus checksum extension)", 500: "A bug in the node; see its log",
       503: "Not available now; retry"}


INTERNAL_ERROR = _json(_error_schema(("internal_error",)), WHY[500] + ": `internal_error`")


def errors(by_status: dict[int, tuple[str, ...]], *, storage: bool = True,
           fields: dict[int, Json] | None = None) -> Json:
    """The error responses of one operation: ``{status: codes}`` plus the edge's 400s, 500, and
    (``storage``) 503 ``storage_unavailable`` / ``storage_error`` with ``Retry-After``;
    ``fields[status]``: the body fields a status adds beside code and message."""
    merged = {400: EDGE_400, **by_status}
    if 400 in by_status:
        merged[400] = tuple(by_status[400]) + EDGE_400
    if storage:
        merged[503] = tuple(by_status.get(503, ())) + ("storage_unavailable", "storage_error")
    out: Json = {}
    for status in sorted(merged):
        codes = merged[status]
        resp = _json(_error_schema(codes, (fields or {}).get(status)), WHY.get(status, "Error") + ": "
                     + ", ".join(f"`{c}`" for c in codes))
        if status == 503:
            resp["headers"] = {"Retry-After": _ref("headers", "Retry-After")}
        out[str(status)] = resp
    out["500"] = _ref("responses", "InternalError")
    return out


def _op(summary: str, responses: Json, *, tags: list[str], description: str | None = None,
        parameters: list[Json] | None = None, body: Json | None = None,
        security: list[Json] | None = None, op_id: str) -> Json:
    op: Json = {"operationId": op_id, "summary": summary, "tags": tags}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    if security is not None:
        op["security"] = security
    op["responses"] = responses
    return op


TOKEN = [{"bearer": []}]
TOKEN_OPTIONAL = [{}, {"bearer": []}]
WRITE_AUTH = {401: ("unauthorized",), 403: ("forbidden",)}


def _head_of(get: Json) -> Json:
    """``HEAD``: the ``GET``'s statuses and headers without bodies."""
    head = copy.deepcopy(get)
    head["operationId"] = get["operationId"] + "Head"
    head["summary"] = "Headers of: " + get["summary"]
    head.pop("description", None)
    head["responses"] = _without_bodies(head["responses"])
    return head


def _without_bodies(responses: Json) -> Json:
    """The responses of a ``HEAD``: statuses and headers, no content."""
    out: Json = {}
    for status, resp in responses.items():
        if "$ref" in resp:  # the shared InternalError: the HEAD twin keeps only its description
            out[status] = {"description": INTERNAL_ERROR["description"]}
        else:
            out[status] = {k: v for k, v in resp.items() if k != "content"}
    return out


def _preflight(op_id: str, path_params: list[Json]) -> Json:
    return _op("CORS preflight, or the methods this path serves", {
        "200": {"description": "Not a preflight: `Allow` lists the methods",
                "headers": {"Allow": {"schema": {"type": "string"}}}},
        "204": {"description": "A browser's preflight (`Access-Control-Request-Method` sent)",
                "headers": _preflight_headers()},
        **errors({}, storage=False)},
        tags=["cors"], op_id=op_id, parameters=[*path_params, _ref("parameters", "Origin"),
                                                _ref("parameters", "Access-Control-Request-Method")])


def _preflight_headers() -> Json:
    return {name: {"schema": {"type": "string"}, "description": desc} for name, desc in (
        ("Access-Control-Allow-Origin", "`*`, or the request's Origin when it is in `cors.origins`"),
        ("Access-Control-Allow-Methods", f"`{edge.METHODS}`"),
        ("Access-Control-Allow-Headers", f"`{edge.ALLOW_HEADERS}`"),
        ("Access-Control-Max-Age", f"`{edge.MAX_AGE}`"))}


def _with_head_and_options(paths: dict[str, Json]) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for path, ops in paths.items():
        ops = dict(ops)
        if "get" in ops and "head" not in ops:
            ops["head"] = _head_of(ops["get"])
        if "options" not in ops:
            ops["options"] = _preflight(_op_id("options", path), _path_params(ops))
        out[path] = ops
    return out


PATH_PARAMS = ("VideoId", "Rendition", "Segment")  # components/parameters that are "in": "path"


def _path_params(ops: dict[str, Json]) -> list[Json]:
    """The path parameters the operations of one path declare (once each, in order)."""
    out: list[Json] = []
    for op in ops.values():
        for p in op.get("parameters", []):
            inline = p.get("in") == "path"
            if (inline or p.get("$ref", "").rsplit("/", 1)[-1] in PATH_PARAMS) and p not in out:
                out.append(p)
    return out


def _op_id(method: str, path: str) -> str:
    words = [w.strip("{}").replace(".", "_").replace("-", "_") for w in path.split("/") if w]
    return method + "".join(w[:1].upper() + w[1:] for w in words) if words else method + "Root"


# ---- the document -----------------------------------------------------------------------------

DESCRIPTION = f"""\
Shoal: a cluster of identical peer nodes that ingests, transcodes (HLS) and streams video.
Every node serves all of this API with the same answers; docs/api.md is the contract of record.

* **Errors** have one shape, `{{"error": {{"code": "<snake_case>", "message": "<text>", ...}}}}`
  (schema `Error`); some add fields beside code and message (`409 not_ready` adds `state`).
  Every operation may answer `400 bad_request` / `bad_framing` (refused by the HTTP edge before
  any route: not an HTTP request, or ambiguous body framing; the connection is closed) and
  `500 internal_error`. A method a path does not serve is `405 method_not_allowed`, an unknown
  path `404 not_found`, both in the same shape.
* **Auth**: writes need `Authorization: Bearer <token>` (missing `401 unauthorized`, wrong
  `403 forbidden`); reads are open. A cluster started with `auth: none` has no token and
  accepts writes without one.
* **Every answer** carries `X-Served-By: <node id>` and the CORS headers of `cors.origins` in
  cluster.yml (`Access-Control-Allow-Origin`, `Access-Control-Expose-Headers`; with a list,
  `Vary: Origin`). Every path answers a browser's preflight (`OPTIONS` with
  `Access-Control-Request-Method`) with `204`.
* **HEAD**: every `GET` also answers `HEAD` with the same status and headers and no body.
* **Not described**: routes under `{INTERNAL_PREFIX}` are hops between nodes, proven with the
  cluster key (`X-Shoal-Hop`), not part of the public API; they are left out of this document
  on purpose.
"""


def document() -> Json:
    """The OpenAPI 3.1 document (a fresh dict: callers may change it)."""
    vid = _ref("parameters", "VideoId")
    video = _ref("schemas", "Video")
    tus_version = _ref("parameters", "Tus-Resumable")
    tus_resp = {"Tus-Resumable": _ref("headers", "Tus-Resumable")}
    object_headers = {n: _ref("headers", n) for n in ("ETag", "Cache-Control", "Accept-Ranges")}
    hls_params = [vid, _ref("parameters", "Range"), _ref("parameters", "If-None-Match")]

    def hls_get(what: str, media: str, op_id: str, extra: list[Json]) -> Json:
        return _op(f"HLS {what}", {
            "200": {"description": f"The {what} (immutable once committed)", "headers": object_headers,
                    "content": {media: {"schema": {"type": "string", "format": "binary"}}}},
            "206": {"description": "One `Range` (several ranges: `200` with the whole body)",
                    "headers": {**object_headers, "Content-Range": _ref("headers", "Content-Range")},
                    "content": {media: {"schema": {"type": "string", "format": "binary"}}}},
            "304": {"description": "`If-None-Match` matched the ETag", "headers": object_headers},
            **errors({404: ("not_found",), 409: ("not_ready",), 416: ("bad_range",)},
                     fields={409: {"state": {"enum": list(lifecycle.STATES)}}}),
        }, tags=["playback"], parameters=hls_params + extra, op_id=op_id, description=(
            "Only the epoch the `ready` commit names is read, so nothing partial is visible. "
            "Identical bytes and ETag on every node; cache hits are answered by the fast lane "
            "(`sendfile`) with the same headers. Before `ready`: `409 not_ready` with `state`; "
            "unknown or deleted: `404`. A `416` carries `Content-Range: bytes */<size>`."))

    def hls_head(get: Json) -> Json:
        head = _head_of(get)
        head["summary"] = get["summary"] + ": headers only"
        return head

    master = hls_get("master playlist", "application/vnd.apple.mpegurl", "getHlsMaster", [])
    index = hls_get("rendition playlist", "application/vnd.apple.mpegurl", "getHlsRendition",
                    [_ref("parameters", "Rendition")])
    segment = hls_get("segment", "video/mp2t", "getHlsSegment",
                      [_ref("parameters", "Rendition"), _ref("parameters", "Segment")])
    poster = hls_get("poster", "image/jpeg", "getPoster", [])
    poster["summary"] = "The poster image (JPEG)"
    poster["responses"]["404"]["description"] = ("Unknown or deleted video, or one committed without "
                                                 "a poster (`playback.poster` is null)")
    poster["description"] = (
        "One frame (10% into the video, at most 5 s), at most 720 lines, made while the video was "
        "processed and stored with its outputs; immutable, identical on every node. Before `ready`: "
        "`409 not_ready` with `state`.")

    def tus_errors(by_status: dict[int, tuple[str, ...]]) -> Json:
        return {k: v if "$ref" in v else {**v, "headers": {**v.get("headers", {}), **tus_resp}}
                for k, v in errors({412: ("tus_version_required", "tus_version_unsupported"),
                                    **by_status}).items()}

    discovery = {n: _ref("headers", n) for n in ("Tus-Resumable", "Tus-Version", "Tus-Extension",
                                                   "Tus-Max-Size", "Tus-Checksum-Algorithm")}
    tus_options = _op("tus discovery (also answers a browser's CORS preflight)", {
        "204": {"description": "The server's tus version, extensions, checksum algorithms and size limit",
                "headers": {**discovery, **_preflight_headers()}},
        **errors({}, storage=False)}, tags=["tus"], op_id="optionsUploads",
        parameters=[_ref("parameters", "Origin"), _ref("parameters", "Access-Control-Request-Method")])

    upload_params = [tus_version, _ref("parameters", "Upload-Checksum")]
    paths: dict[str, Json] = {
        "/v1/videos": {
            "post": _op("Upload a video in one request", {
                "200": {**_json(video, "A retry with the same `Idempotency-Key`: the same video"),
                        "headers": {"Location": _ref("headers", "Location")}},
                "201": {**_json(video, "The video, `uploaded`, once its bytes are durable in storage"),
                        "headers": {"Location": _ref("headers", "Location")}},
                **errors({400: ("empty_body", "body_too_short", "body_too_long", "bad_idempotency_key"),
                          **WRITE_AUTH, 409: ("upload_in_progress",), 411: ("length_required",),
                          413: ("too_large",)}),
            }, tags=["videos"], op_id="uploadVideo", security=TOKEN, parameters=[
                _ref("parameters", "Content-Length"), _ref("parameters", "Idempotency-Key"),
                _ref("parameters", "X-Filename")],
                body={"required": True, "description": "The video file's bytes, with `Content-Length` "
                      "(chunked bodies: use the resumable upload at `/v1/uploads`); over "
                      "`limits.max_upload_bytes` is refused with `413` before reading",
                      "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                          "format": "binary"}}}}),
            "get": _op("List videos in creation order", {
                "200": _json(_ref("schemas", "VideoList"), "One page; follow `next` until it is null"),
                **errors({400: ("bad_state", "bad_limit", "bad_cursor"), 401: ("unauthorized",)}),
            }, tags=["videos"], op_id="listVideos", security=TOKEN_OPTIONAL, description=(
                f"Without the token `state` may only be absent or `ready` (others: `401`), `limit` is "
                f"1-{LIST_LIMIT_ANONYMOUS}, and one request examines at most 100 catalog entries: a page "
                "may hold fewer than `limit` videos, even none, with a non-null `next`."), parameters=[
                {"name": "state", "in": "query", "schema": {"enum": list(lifecycle.STATES)}},
                {"name": "limit", "in": "query", "description": f"1-1000 with the token, 1-{LIST_LIMIT_ANONYMOUS} "
                 "without", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
                {"name": "cursor", "in": "query", "description": "`next` of the previous page",
                 "schema": {"type": "string", "pattern": f"^{layout.ID_RE.pattern}$"}}]),
        },
        "/v1/videos/{id}": {
            "get": _op("A video", {"200": _json(video, "The video"), **errors({404: ("not_found",)})},
                       tags=["videos"], op_id="getVideo", parameters=[vid]),
            "delete": _op("Delete a video", {
                "202": _json(video, "The video, now `deleted` (also for one already deleted); its objects "
                             "are removed and playback answers 404"),
                **errors({**WRITE_AUTH, 404: ("not_found",)})},
                tags=["videos"], op_id="deleteVideo", parameters=[vid], security=TOKEN),
        },
        "/v1/videos/{id}/hls/master.m3u8": {"get": master, "head": hls_head(master)},
        "/v1/videos/{id}/hls/{rendition}/index.m3u8": {"get": index, "head": hls_head(index)},
        "/v1/videos/{id}/hls/{rendition}/{segment}": {"get": segment, "head": hls_head(segment)},
        "/v1/videos/{id}/poster.jpg": {"get": poster, "head": hls_head(poster)},
        "/v1/uploads": {
            "options": tus_options,
            "post": _op("tus: create an upload (creation, creation-with-upload)", {
                "201": {"description": "Created; `Upload-Offset` is what the body (if any) made durable",
                        "headers": {"Location": _ref("headers", "Location"), **tus_resp,
                                    "Upload-Offset": _ref("headers", "Upload-Offset"),
                                    "Upload-Expires": _ref("headers", "Upload-Expires")}},
                **tus_errors({400: ("upload_length_required", "bad_upload_length", "bad_upload_metadata",
                                    "bad_upload_checksum", "unsupported_checksum_algorithm",
                                    "defer_length_unsupported"),
                              **WRITE_AUTH, 413: ("too_large", "beyond_upload_length"),
                              460: ("checksum_mismatch",)}),
            }, tags=["tus"], op_id="createUpload", security=TOKEN, parameters=[
                *upload_params, _ref("parameters", "Upload-Length"), _ref("parameters", "Upload-Metadata"),
                _ref("parameters", "Upload-Defer-Length")], description=(
                "The tus upload id is the video id. A body sent with "
                f"`Content-Type: {OFFSET_CONTENT_TYPE}` is the first PATCH."),
                body={"required": False, "content": {OFFSET_CONTENT_TYPE: {
                    "schema": {"type": "string", "format": "binary"}}}}),
        },
        "/v1/uploads/{id}": {
            "options": {**copy.deepcopy(tus_options), "operationId": "optionsUpload",
                        "parameters": [vid, *tus_options["parameters"]]},
            "head": _op("tus: the upload's offset", {
                "200": {"description": "The durable offset and the length",
                        "headers": {**tus_resp, **{n: _ref("headers", n) for n in
                                                   ("Upload-Offset", "Upload-Length", "Upload-Expires")},
                                    "Cache-Control": _ref("headers", "Cache-Control")}},
                **_without_bodies(tus_errors({404: ("not_found",), 409: ("upload_incomplete",),
                                              410: ("gone",)}))},
                tags=["tus"], op_id="headUpload", parameters=[vid, tus_version]),
            "patch": _op("tus: append bytes at Upload-Offset", {
                "204": {"description": "The bytes are durable; the new offset",
                        "headers": {**tus_resp, "Upload-Offset": _ref("headers", "Upload-Offset"),
                                    "Upload-Expires": _ref("headers", "Upload-Expires")}},
                **tus_errors({400: ("upload_offset_required", "bad_upload_offset", "bad_upload_checksum",
                                    "unsupported_checksum_algorithm"),
                              **WRITE_AUTH, 404: ("not_found",),
                              409: ("offset_mismatch", "upload_locked", "lock_lost", "upload_complete",
                                    "upload_full", "upload_exhausted", "upload_incomplete"),
                              410: ("gone",), 413: ("beyond_upload_length",), 415: ("bad_content_type",),
                              460: ("checksum_mismatch",)}),
            }, tags=["tus"], op_id="patchUpload", security=TOKEN,
                parameters=[vid, *upload_params, _ref("parameters", "Upload-Offset")],
                body={"required": True, "content": {OFFSET_CONTENT_TYPE: {
                    "schema": {"type": "string", "format": "binary"}}}}),
            "delete": _op("tus: terminate the upload (the video becomes `deleted`)", {
                "204": {"description": "Terminated", "headers": tus_resp},
                **tus_errors({**WRITE_AUTH, 404: ("not_found",), 410: ("gone",)}),
            }, tags=["tus"], op_id="terminateUpload", security=TOKEN, parameters=[vid, tus_version]),
        },
        "/v1/cluster/members": {"get": _op("Members as this node's gossip sees them", {
            "200": _json(_ref("schemas", "Members"), "This node's id and its view of the members"),
            **errors({}, storage=False)}, tags=["cluster"], op_id="getMembers")},
        "/v1/cluster/ring": {"get": _op("The consistent-hash ring", {
            "200": _json(_ref("schemas", "Ring"), "Version, digest, members with weights, virtual nodes, shares"),
            **errors({503: ("no_ring",)}, storage=False)}, tags=["cluster"], op_id="getRing")},
        "/v1/cluster/owner/{id}": {"get": _op("Who owns a video", {
            "200": _json(_ref("schemas", "Owner"), "Ring owner and preference list; the lease holder and "
                         "epoch when the video exists"),
            **errors({404: ("not_found",), 503: ("no_ring",)})},
            tags=["cluster"], op_id="getOwner", parameters=[vid])},
        "/v1/node": {"get": _op("This node", {
            "200": _json(_ref("schemas", "NodeInfo"), "Id, version, uptime, jobs, worker counters, cache"),
            **errors({}, storage=False)}, tags=["operations"], op_id="getNode")},
        "/healthz": {"get": _op("Liveness", {
            "200": _json(_ref("schemas", "Health"), "The process runs"),
            **errors({}, storage=False)}, tags=["operations"], op_id="getHealthz")},
        "/readyz": {"get": _op("Readiness", {
            "200": _json(_ref("schemas", "Readiness"), "Joined and storage answers"),
            "503": {**_json(_ref("schemas", "Readiness"), "Not ready: the body says which of storage or "
                            "joining is missing"), "headers": {"Retry-After": _ref("headers", "Retry-After")}},
            **{k: v for k, v in errors({}, storage=False).items()}},
            tags=["operations"], op_id="getReadyz")},
        "/metrics": {"get": _op("Prometheus metrics", {
            "200": {"description": "Prometheus text exposition format (docs/operations.md lists the metrics)",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            **errors({}, storage=False)}, tags=["operations"], op_id="getMetrics")},
        PATH: {"get": _op("This document", {
            "200": _json({"type": "object"}, "The OpenAPI 3.1 description of the public API"),
            **errors({}, storage=False)}, tags=["operations"], op_id="getOpenapi")},
        "/v1/debug/gossip-block": {"post": _op("Fault injection: drop gossip to and from these nodes", {
            "200": _json({"type": "object", "required": ["blocked"],
                          "properties": {"blocked": {"type": "array", "items": {"type": "string"}}}},
                         "The node ids now blocked (an empty list unblocks)"),
            **errors({400: ("bad_ids",), **WRITE_AUTH, 503: ("no_membership",)}, storage=False)},
            tags=["debug"], op_id="blockGossip", security=TOKEN, body={"required": True, "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "ids": {"type": "array", "items": {"type": "string"}}}}}}})},
        "/": {"get": _op("The web page (upload, videos, playback, cluster view)", {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
            **errors({}, storage=False)}, tags=["web"], op_id="getIndex")},
        "/static/{name}": {"get": _op("The page's own script and style", {
            "200": {"description": "The file", "content": {"*/*": {"schema": {"type": "string"}}}},
            **errors({404: ("not_found",)}, storage=False)}, tags=["web"], op_id="getStatic", parameters=[
                {"name": "name", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": r"^[^/.][^/]*$", "examples": ["app.js"]}}])},
        "/static/vendor/{name}": {"get": _op("The page's browser libraries (from web/node_modules)", {
            "200": {"description": "The library", "content": {"text/javascript": {"schema": {"type": "string"}}}},
            **errors({404: ("not_found",), 503: ("not_installed",)}, storage=False)},
            tags=["web"], op_id="getVendor", parameters=[
                {"name": "name", "in": "path", "required": True,
                 "schema": {"enum": ["hls.js", "tus.js"], "examples": ["hls.js"]}}])},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Shoal", "version": VERSION, "description": DESCRIPTION},
        "tags": [{"name": n, "description": d} for n, d in (
            ("videos", "Upload, read, list and delete videos"),
            ("playback", "HLS playlists and segments"),
            ("tus", f"Resumable uploads, tus {TUS_VERSION}: extensions {', '.join(EXTENSIONS)}"),
            ("cluster", "Membership and ownership as the answering node sees them"),
            ("operations", "Health, readiness, metrics, this node, this document"),
            ("debug", "Fault injection for tests (token)"),
            ("web", "The browser page"),
            ("cors", "Preflights (node.http.edge)"))],
        "paths": _with_head_and_options(paths),
        "components": _components(),
    }


def _components() -> Json:
    nullable = lambda t: {"type": [t, "null"]}  # noqa: E731
    # every header below is sent on every answer that names it, but Upload-Expires (not once complete)
    hdr = lambda d, required=True, **s: {"description": d, "required": required,  # noqa: E731
                                         "schema": {"type": "string", **s}}
    return {
        "responses": {"InternalError": copy.deepcopy(INTERNAL_ERROR)},
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description":
                                       "The cluster's token (`shoal token` prints it)"}},
        "parameters": {
            "VideoId": {"name": "id", "in": "path", "required": True, "description":
                        "A video id: 26 characters of [a-z2-7]; anything else is 404 without touching storage",
                        "schema": {"type": "string", "pattern": f"^{layout.ID_RE.pattern}$",
                                   "examples": [EXAMPLE_ID]}},
            "Rendition": {"name": "rendition", "in": "path", "required": True, "description":
                          "A rendition's name, as the master playlist names it", "schema": {
                              "type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$", "examples": ["360p"]}},
            "Segment": {"name": "segment", "in": "path", "required": True, "schema": {
                "type": "string", "pattern": r"^seg_[0-9]{5}\.ts$", "examples": ["seg_00001.ts"]}},
            "Range": {"name": "Range", "in": "header", "description": "One byte range: `206`; several: "
                      "`200` with the whole body", "schema": {"type": "string", "examples": ["bytes=0-1023"]}},
            "If-None-Match": {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
            "Origin": {"name": "Origin", "in": "header", "schema": {"type": "string"}},
            "Access-Control-Request-Method": {"name": "Access-Control-Request-Method", "in": "header",
                                              "description": "Present: a CORS preflight",
                                              "schema": {"type": "string"}},
            "Content-Length": {"name": "Content-Length", "in": "header", "required": True,
                               "description": "Required: `411 length_required` without it",
                               "schema": {"type": "integer", "minimum": 0}},
            "Idempotency-Key": {"name": "Idempotency-Key", "in": "header", "description":
                                "A retry with the same key answers `200` with the same video",
                                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY}},
            "X-Filename": {"name": "X-Filename", "in": "header", "description": "The original file name "
                           "(unprintable characters and slashes dropped, at most 255)",
                           "schema": {"type": "string"}},
            "Tus-Resumable": {"name": "Tus-Resumable", "in": "header", "required": True,
                              "schema": {"const": TUS_VERSION}},
            "Upload-Length": {"name": "Upload-Length", "in": "header", "description":
                              "Required (deferred length is not supported)",
                              "schema": {"type": "integer", "minimum": 0}},
            "Upload-Offset": {"name": "Upload-Offset", "in": "header", "required": True,
                              "schema": {"type": "integer", "minimum": 0}},
            "Upload-Metadata": {"name": "Upload-Metadata", "in": "header", "description":
                                f"tus metadata (`filename` or `name` is the video's file name), at most "
                                f"{MAX_METADATA} bytes", "schema": {"type": "string", "maxLength": MAX_METADATA}},
            "Upload-Checksum": {"name": "Upload-Checksum", "in": "header", "description":
                                f"`<algorithm> <base64 digest>`; algorithms: {', '.join(CHECKSUM_ALGORITHMS)}",
                                "schema": {"type": "string"}},
            "Upload-Defer-Length": {"name": "Upload-Defer-Length", "in": "header", "description":
                                    "Not supported: `400 defer_length_unsupported`", "schema": {"type": "string"}},
        },
        "headers": {
            "Retry-After": hdr("Seconds to wait before retrying", pattern="^[0-9]+$"),
            "Location": hdr("The created resource's path"),
            "ETag": hdr("The stored object's ETag, identical on every node"),
            "Cache-Control": hdr("Segments: `public, max-age=31536000, immutable`; playlists: `max-age=5`; "
                                 "tus: `no-store`"),
            "Accept-Ranges": hdr("`bytes`"),
            "Content-Range": hdr("`bytes <first>-<last>/<size>`"),
            "Tus-Resumable": hdr(f"`{TUS_VERSION}`"),
            "Tus-Version": hdr(f"`{TUS_VERSION}`"),
            "Tus-Extension": hdr(f"`{','.join(EXTENSIONS)}`"),
            "Tus-Max-Size": hdr("`limits.max_upload_bytes`", pattern="^[0-9]+$"),
            "Tus-Checksum-Algorithm": hdr(f"`{','.join(CHECKSUM_ALGORITHMS)}`"),
            "Upload-Offset": hdr("Bytes durable in storage", pattern="^[0-9]+$"),
            "Upload-Length": hdr("The upload's declared length", pattern="^[0-9]+$"),
            "Upload-Expires": hdr("When an abandoned upload expires (HTTP date); not sent once the "
                                  "upload is complete", required=False),
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "description": "The contract's error shape",
                      "properties": {"error": {
                          "type": "object", "required": ["code", "message"], "additionalProperties": True,
                          "properties": {"code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                                         "message": {"type": "string"}}}}},
            "Video": {"type": "object", "required": ["id", "state", "created_at", "updated_at", "error",
                                                     "renditions", "owner", "attempts", "epoch", "history"],
                      "properties": {
                          "id": {"type": "string", "pattern": f"^{layout.ID_RE.pattern}$"},
                          "state": {"enum": list(lifecycle.STATES)},
                          "filename": nullable("string"), "size": nullable("integer"),
                          "created_at": {"type": "number", "description": "Unix seconds"},
                          "updated_at": {"type": "number", "description": "Unix seconds"},
                          "error": {"oneOf": [{"type": "null"}, {
                              "type": "object", "required": ["code", "message"], "properties": {
                                  "code": {"type": "string"}, "message": {"type": "string"}}}],
                              "description": "Why a video failed (`media_limit`, `undecodable_input`, "
                                             "`attempts_exhausted`, ...)"},
                          "renditions": {"type": "array", "items": _ref("schemas", "Rendition")},
                          "playback": {"type": "object", "description": "Present when `ready`",
                                       "properties": {"hls": {"type": "string"},
                                                      "poster": {**nullable("string"), "description":
                                                                 "The poster's URL; null when none was made"}}},
                          "owner": {**nullable("string"), "description": "The ring owner as the answering "
                                    "node sees it"},
                          "attempts": {"type": "integer"}, "epoch": {"type": "integer"},
                          "history": {"type": "array", "items": {
                              "type": "object", "required": ["state", "at", "node", "epoch"],
                              "properties": {"state": {"enum": list(lifecycle.STATES)}, "at": {"type": "number"},
                                             "node": {"type": "string"}, "epoch": {"type": "integer"}}}},
                          "upload": {"type": "object", "description": "Present while a resumable upload runs",
                                     "properties": {"offset": {"type": "integer"}, "length": nullable("integer")}},
                      }},
            "Rendition": {"type": "object", "properties": {
                "name": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
                "bandwidth": {"type": "integer"}}},
            "VideoList": {"type": "object", "required": ["videos", "next"], "properties": {
                "videos": {"type": "array", "items": _ref("schemas", "Video")},
                "next": {**nullable("string"), "description": "The cursor of the next page; null at the end"}}},
            "Members": {"type": "object", "required": ["self", "members"], "properties": {
                "self": {"type": "string"},
                "members": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "gossip_addr": {"type": "string"}, "http_addr": {"type": "string"},
                    "state": {"enum": ["alive", "suspect", "dead", "left", "unknown"]},
                    "incarnation": {"type": "integer"}, "since": {"type": "number"}}}}}},
            "Ring": {"type": "object", "properties": {
                "version": {"type": "integer"}, "digest": {"type": "string"}, "replicas": {"type": "integer"},
                "points_per_weight": {"type": "integer"}, "vnodes": {"type": "integer"},
                "members": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "weight": {"type": "number"}, "vnodes": {"type": "integer"},
                    "share": {"type": "number"}}}}}},
            "Owner": {"type": "object", "required": ["video", "owner", "preference", "ring_version"], "properties": {
                "video": {"type": "string"}, "owner": nullable("string"),
                "preference": {"type": "array", "items": {"type": "string"}},
                "ring_version": {"type": "integer"}, "state": {"enum": list(lifecycle.STATES)},
                "epoch": nullable("integer"), "lease": {"type": ["object", "null"]}}},
            "NodeInfo": {"type": "object", "properties": {
                "id": {"type": "string"}, "version": {"type": "string"}, "uptime": {"type": "number"},
                "http_addr": {"type": "string"}, "storage_ok": {"type": "boolean"},
                "tasks_in_flight": {"type": "integer"}, "jobs": {"type": "array", "items": {"type": "object"}},
                "worker": {"type": "object"}, "counters": {"type": "object"}, "cache": {"type": ["object", "null"]}}},
            "Health": {"type": "object", "properties": {"ok": {"const": True}, "node": {"type": "string"}}},
            "Readiness": {"type": "object", "required": ["ready", "storage", "joined", "node"], "properties": {
                "ready": {"type": "boolean"}, "storage": {"type": "boolean"}, "joined": {"type": "boolean"},
                "node": {"type": "string"}}},
        },
    }


def register(app, ctx: NodeContext) -> None:
    body = json.dumps(document(), separators=(",", ":")).encode()  # built once: it never changes

    @app.get(PATH)
    async def openapi():
        return Response(body, status=200, headers={"Content-Type": "application/json",
                                                    "Cache-Control": "public, max-age=300"})
