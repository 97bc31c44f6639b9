"""The HTTP application: quart-trio with bounded request bodies and JSON errors.

Route modules each have ``register(app, ctx)``: routes_videos (uploads and
records), routes_playback (HLS), routes_ops (health, metrics, node and cluster
views), routes_tus (resumable uploads), openapi (``/v1/openapi.json``, the API description),
web (the page at ``/``).

CORS (node.http.edge): every answer carries the headers for the request's ``Origin``, and a
browser's preflight (``OPTIONS`` + ``Access-Control-Request-Method``) to any routed path is
answered 204 here, before the route (tus's own ``OPTIONS`` stays for tus discovery).

Every error a handler lets through is answered by one handler, from the table in
node.http.errors (:func:`~node.http.errors.answer_for`).

Every request hypercorn answers is measured and logged once by node.http.edge's middleware,
put around the app's ASGI callable here.
"""

from __future__ import annotations

import hmac
import traceback
from functools import wraps
from typing import Any, Callable

from quart import Response, request

from node import log
from node.context import NodeContext
from node.http.errors import INTERNAL, ApiError, answer_for, answer_response, error_response, note
from node.http.fastlane import framing_error
from node.http import edge
from node.http.patches import BackpressureQuartTrio


class ShoalApp(BackpressureQuartTrio):
    """The node's app: quart-trio with bounded request bodies (node.http.patches, node.http.body)."""


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
    app = ShoalApp(__name__, static_folder=None, body_buffer=ctx.cfg.limits.body_buffer)
    # "//" in a path (a decoded "%2f" too) is matched as it is, answered 404/400 with the error
    # shape, never redirected by Werkzeug with a 308 HTML page; set before any route is added
    app.url_map.merge_slashes = False
    app.config.update(MAX_CONTENT_LENGTH=None, RESPONSE_TIMEOUT=None, BODY_TIMEOUT=None,
                      JSON_SORT_KEYS=False)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.errorhandler(Exception)
    async def _answer(e: Exception):
        answer = answer_for(e)
        if answer is INTERNAL:
            log.error("unhandled_error", path=request.path, error=f"{type(e).__name__}: {e}",
                      trace=traceback.format_exc(limit=8))
        else:
            note(ctx, e, request.path)
        return answer_response(answer)

    @app.before_request
    async def _framing():
        """CL+TE or a Transfer-Encoding other than ``chunked`` (h11 accepts the first, reading
        the body as chunked): 400 and close, so bytes after the body are never a request."""
        fields = {n: ", ".join(request.headers.getlist(n)) for n in ("transfer-encoding", "content-length")
                  if n in request.headers}
        why = framing_error(fields)
        if why is not None:
            ctx.metrics.events.http_refused.inc()
            resp = error_response(400, "bad_framing", why)
            resp.headers["Connection"] = "close"
            return resp
        return None

    origins = ctx.cfg.cors.origins

    @app.before_request
    async def _preflight():
        """A browser's preflight for any path a route serves: 204 with node.http.edge's
        headers.  Unknown paths fall through (404 in the contract's shape)."""
        if not edge.is_preflight(request.method, request.headers.get("Access-Control-Request-Method")):
            return None
        if edge.internal(request.path):
            return None  # no page may call a node-to-node route: 405/404 as without CORS
        adapter = app.create_url_adapter(request)
        if adapter is None or not adapter.allowed_methods():  # no route serves this path
            return None
        return Response("", status=204, headers=edge.preflight_headers(origins, request.headers.get("Origin")))

    @app.after_request
    async def _cors(resp):
        if edge.internal(request.path):
            resp.headers["X-Served-By"] = ctx.node_id
            return resp
        for name, value in edge.answer_headers(origins, request.headers.get("Origin")):
            if name == "Vary":
                resp.vary.add(value)
            else:
                resp.headers[name] = value
        resp.headers["X-Served-By"] = ctx.node_id
        return resp

    from node.http import openapi, routes_ops, routes_playback, routes_tus, routes_videos, web
    for routes in (routes_videos, routes_playback, routes_ops, routes_tus, openapi, web):
        routes.register(app, ctx)
    edge.install(app, edge.Access(ctx.metrics, log_lines=ctx.cfg.access_log))
    return app
