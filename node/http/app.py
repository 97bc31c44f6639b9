"""The HTTP application: quart-trio with bounded request bodies and JSON errors.

Route modules each have ``register(app, ctx)``: routes_videos (uploads and
records), routes_playback (HLS), routes_ops (health, metrics, node and cluster
views), routes_tus (resumable uploads), web (the page at ``/``).
"""

from __future__ import annotations

import hmac
import traceback
from functools import wraps
from typing import Any, Callable

import storage
from quart import request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from node import log
from node.context import NodeContext
from node.http.cors import ALLOW_ORIGIN, EXPOSE_HEADERS
from node.http.errors import ApiError, error_response, from_api_error, storage_failure
from node.http.body import BackpressureConnection, BoundedBody, BoundedRequest


class ShoalApp(QuartTrio):
    asgi_http_class = BackpressureConnection
    request_class = BoundedRequest


def require_token(ctx: NodeContext) -> Callable:
    """Write endpoints need ``Authorization: Bearer <token>`` when the cluster has one."""

    def deco(fn: Callable) -> Callable:
        @wraps(fn)
        async def wrapper(*a: Any, **kw: Any) -> Any:
            if ctx.token:
                auth = request.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    raise ApiError(401, "unauthorized", "this endpoint needs 'Authorization: Bearer <token>' "
                                   "(`shoal token` prints it)")
                if not hmac.compare_digest(auth[7:].strip().encode(), ctx.token.encode()):
                    raise ApiError(403, "forbidden", "the bearer token is not valid for this cluster")
            return await fn(*a, **kw)
        return wrapper
    return deco


def create_app(ctx: NodeContext) -> ShoalApp:
    app = ShoalApp(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=None, RESPONSE_TIMEOUT=None, BODY_TIMEOUT=None,
                      JSON_SORT_KEYS=False)
    BoundedBody.limit = ctx.cfg.limits.body_buffer
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.errorhandler(ApiError)
    async def _api_error(e: ApiError):
        return from_api_error(e)

    @app.errorhandler(storage.StorageError)
    async def _storage_error(e: storage.StorageError):
        return from_api_error(storage_failure(ctx, e, request.path))

    @app.errorhandler(HTTPException)
    async def _http_error(e: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 400: "bad_request",
                408: "request_timeout"}.get(e.code or 500, "http_error")
        return error_response(e.code or 500, code, e.description or e.name)

    @app.errorhandler(Exception)
    async def _unexpected(e: Exception):
        log.error("unhandled_error", path=request.path, error=f"{type(e).__name__}: {e}",
                  trace=traceback.format_exc(limit=8))
        return error_response(500, "internal_error", "the node failed to handle this request; see its log")

    @app.after_request
    async def _cors(resp):
        resp.headers.setdefault("Access-Control-Allow-Origin", ALLOW_ORIGIN)
        resp.headers.setdefault("Access-Control-Expose-Headers", EXPOSE_HEADERS)
        resp.headers["X-Served-By"] = ctx.node_id
        return resp

    from node.http import routes_ops, routes_playback, routes_tus, routes_videos, web
    for routes in (routes_videos, routes_playback, routes_ops, routes_tus, web):
        routes.register(app, ctx)
    return app
