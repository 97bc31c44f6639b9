"""Every HTTP request, on either path, is measured once and logged in one line.

:class:`Access` is what both paths call when a request is done (the fast lane after its answer
is sent; :class:`AccessMiddleware`, around the quart app, when hypercorn's answer is sent):
``done(method, route, status, bytes_in, bytes_out, seconds)`` records the node's metrics
(node/metrics.py: latency by route class and status class, body bytes in and out) and, when
``access_log`` is on in cluster.yml (the default), writes one ``http_request`` line through
node/log.py::

    {"ts":..., "level":"info", "node":"n1", "event":"http_request", "method":"GET",
     "route":"playback_hit", "status":200, "bytes_in":0, "bytes_out":770048, "ms":0.41}

``bytes_in`` / ``bytes_out`` are body bytes (heads are not counted); ``ms`` runs from the
request's head read to the last byte of the answer handed to the socket.  ``status`` 0: the
client went away before an answer was sent.

The route class (:func:`route_class`, pure) says what kind of work a request was
(node.metrics.ROUTE_CLASSES).  A playback request is classed by the path that answered it:
``playback_hit`` (this node's cache file), ``playback_hop`` (this node is not the owner: asked
the owner, or storage when the owner did not answer), ``playback_miss`` (the owner reading
storage, and playback errors); the handler that knows sets it in the request's ASGI scope
(:data:`SCOPE_KEY`), the fast lane passes it directly.

Invariant: each request is counted exactly once: the fast lane counts what it answers, the
middleware what hypercorn answers, and a connection the lane hands over is never counted by it.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from node import log
from node.metrics import NodeMetrics

SCOPE_KEY = "shoal.route"  # set by a handler that knows its class better than the path does

_OPS = ("/healthz", "/readyz", "/metrics", "/v1/node")
_OPS_PREFIXES = ("/v1/cluster/", "/v1/debug/")


def route_class(method: str, path: str) -> str:
    """The route class of ``method path`` as the path alone says it (a playback request is
    ``playback_miss`` until its handler knows better)."""
    if path.startswith("/v1/videos/"):
        return "playback_miss" if "/hls/" in path else "api"
    if path.startswith("/v1/uploads"):
        return "tus_patch" if method == "PATCH" else "tus_other"
    if path == "/v1/videos":
        return "upload_one_shot" if method == "POST" else "api"
    if path.startswith("/v1/internal/"):
        return "internal_hop" if path.startswith("/v1/internal/objects/") else "internal"
    if path in _OPS or path.startswith(_OPS_PREFIXES):
        return "ops"
    if path == "/" or path.startswith("/static/"):
        return "web"
    if path.startswith("/v1/"):
        return "api"
    return "other"


class Access:
    """Records one request's metrics and, if ``log_lines``, its ``http_request`` line."""

    __slots__ = ("_metrics", "_log_lines")

    def __init__(self, metrics: NodeMetrics, *, log_lines: bool = True) -> None:
        self._metrics = metrics
        self._log_lines = log_lines

    def done(self, method: str, route: str, status: int, bytes_in: int, bytes_out: int, seconds: float) -> None:
        self._metrics.request(route, status, bytes_in, bytes_out, seconds)
        if self._log_lines:
            log.info("http_request", method=method, route=route, status=status, bytes_in=bytes_in,
                     bytes_out=bytes_out, ms=round(seconds * 1000.0, 3))


Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class AccessMiddleware:
    """The quart app's ASGI callable, wrapped: counts the body bytes that pass through
    ``receive`` and ``send``, notes the status, and calls :meth:`Access.done` once the app is done
    with the request (answered, failed or cancelled)."""

    def __init__(self, app: Callable[[dict, Receive, Send], Awaitable[None]], access: Access) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self._app(scope, receive, send)
            return
        t0 = time.perf_counter()
        seen = [0, 0, 0]  # status, bytes in, bytes out

        async def counting_receive() -> dict:
            message = await receive()
            if message.get("type") == "http.request":
                seen[1] += len(message.get("body") or b"")
            return message

        async def counting_send(message: dict) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                seen[0] = int(message.get("status", 0))
            elif kind == "http.response.body":
                seen[2] += len(message.get("body") or b"")
            await send(message)

        try:
            await self._app(scope, counting_receive, counting_send)
        finally:
            method = scope.get("method", "")
            route = scope.get(SCOPE_KEY) or route_class(method, scope.get("path", ""))
            self._access.done(method, route, seen[0], seen[1], seen[2], time.perf_counter() - t0)


def install(app: Any, access: Access) -> None:
    """Put :class:`AccessMiddleware` around ``app``'s ASGI callable (Quart's documented way to add
    ASGI middleware: replace ``app.asgi_app``)."""
    app.asgi_app = AccessMiddleware(app.asgi_app, access)
