"""The HTTP application: quart-trio with bounded request bodies and JSON errors.

:class:`ShoalApp` is QuartTrio whose request bodies are bounded and read with backpressure
(below, "Request bodies"); the quart-trio internals it relies on are listed in node.http.patches.

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

Request bodies
--------------

Quart's ASGI connection appends every received chunk to the request body
without limit, so a handler slower than its client lets memory grow with the
upload (measured: 835 MiB for a 500 MB upload).  Here the receive loop stops
pulling from hypercorn while more than ``limit`` bytes wait unread; hypercorn's
bounded queue then pushes back through TCP to the client.  ``limit`` is the app's
``body_buffer`` (set per app, from ``limits.body_buffer``), else :data:`DEFAULT_LIMIT`.

A handler may answer before it read the whole body (401, 409, 413 ...).  Clients
such as tuspy and httpx send the whole body before they read the answer, so the
rest of the body is then received and dropped (up to ``DRAIN_LIMIT`` bytes or
``DRAIN_SECONDS``), which keeps such clients from hanging; past the bounds the
connection is closed at once.  Either way the connection does not outlive such an
answer: hypercorn (0.18) closes it once an answer is sent while the body is still
arriving (traced, 2026-11-30), so the client's next request opens a new one.

The quart-trio internals these classes rely on, and why, are listed in node.http.patches.
"""

from __future__ import annotations

import hmac
import traceback
from collections import deque
from functools import wraps
from typing import Any, Awaitable, Callable, Generator

import trio
from quart import request, Response
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import EventWrapper, TrioBody, TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge

from node import log
from node.context import NodeContext
from node.http import edge
from node.http.errors import answer_for, answer_response, ApiError, error_response, INTERNAL, note
from node.http.fastlane import framing_error


# ---- request bodies: bounded, read with backpressure, drained after an early answer --------------

DEFAULT_LIMIT = 1 << 20
DRAIN_LIMIT = 256 << 20  # unread request bytes we are willing to receive and drop after answering
DRAIN_SECONDS = 30.0


class BoundedBody(TrioBody):
    """Quart's body, bounded, and without copies: received chunks are queued as they came and
    handed out one by one (Quart joins them into one bytearray and copies it out again, two copies
    of every uploaded byte; docs/benchmarks.md)."""

    limit = DEFAULT_LIMIT  # bytes queued before the receive loop waits; per app, see the connection

    def __init__(self, expected_content_length, max_content_length) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._chunks: deque[bytes] = deque()
        self._size = 0  # bytes queued
        self._drained = EventWrapper()
        self._drained.set()
        self.received = 0
        self._discarding = False

    def append(self, data: bytes) -> None:
        self.received += len(data)
        if self._discarding or not data or self._must_raise is not None:
            return
        self._chunks.append(data)
        self._size += len(data)
        self._has_data.set()
        if self._max_content_length is not None and self.received > self._max_content_length:
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()
        if self._size > self.limit:
            self._drained.clear()

    def discard(self) -> None:
        """The handler is done with the body: drop what is buffered and whatever still comes."""
        self._discarding = True
        self.clear()
        self._drained.set()

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0

    @property
    def complete(self) -> bool:
        return self._complete.is_set()

    async def wait_complete(self) -> None:
        await self._complete.wait()

    async def __anext__(self) -> bytes:
        if self._must_raise is not None:
            raise self._must_raise
        if not self._complete.is_set():
            await self._has_data.wait()
        if not self._chunks:
            if self._must_raise is not None:
                raise self._must_raise
            raise StopAsyncIteration()
        data = self._chunks.popleft()
        self._size -= len(data)
        if not self._chunks:
            self._has_data.clear()
        if self._size <= self.limit:
            self._drained.set()
        return data

    def __await__(self) -> Generator[Any, None, bytes]:
        if self._must_raise is not None:
            raise self._must_raise
        yield from self._complete.wait().__await__()
        if self._must_raise is not None:
            raise self._must_raise
        return b"".join(self._chunks)

    def set_complete(self) -> None:
        super().set_complete()
        self._drained.set()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    @property
    def buffered(self) -> int:
        return self._size


class BoundedRequest(TrioRequest):
    body_class = BoundedBody


class BackpressureConnection(TrioASGIHTTPConnection):
    def _create_request_from_scope(self, send):  # type: ignore[no-untyped-def]
        request = super()._create_request_from_scope(send)
        limit = getattr(self.app, "body_buffer", None)
        if limit is not None and isinstance(request.body, BoundedBody):
            request.body.limit = limit  # this app's bound, before any byte is received
        return request

    async def handle_request(self, nursery, request, send) -> None:  # type: ignore[override]
        body = request.body
        response = await self.app.handle_request(request)
        if isinstance(body, BoundedBody) and not body.complete:
            body.discard()
            expected = request.content_length
            if expected is not None and expected - body.received > DRAIN_LIMIT:
                response.headers["Connection"] = "close"  # too much to drain: hang up after answering
        await self._send_response(_last_send_shielded(send), response)
        if isinstance(body, BoundedBody) and not body.complete and \
                response.headers.get("Connection", "").lower() != "close":
            with trio.move_on_after(DRAIN_SECONDS):
                await body.wait_complete()
        nursery.cancel_scope.cancel()

    async def handle_messages(self, nursery, request, receive) -> None:  # type: ignore[override]
        body = request.body
        while True:
            if isinstance(body, BoundedBody):
                await body.wait_drained()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                break
        nursery.cancel_scope.cancel()


def _last_send_shielded(send: Any) -> Any:
    """``send`` with its last message (the response's end) shielded from cancellation.

    hypercorn ends the stream inside that send, and when the request body is still arriving it
    closes the connection there too (``TCPServer._close``: ``send_eof``, ``aclose``), in the
    task that called ``send``.  The same end also puts ``http.disconnect`` in our receive queue,
    and :meth:`BackpressureConnection.handle_messages` answers that by cancelling this
    connection's nursery: a cancellation that lands inside hypercorn's close left the socket
    open with nobody reading it, and the client's next request on it hung (an early 401 under
    load: tests/unit/node/http/test_body_backpressure.py).  What the shield covers is bounded:
    the last body bytes (hypercorn shields its socket sends anyway), a half-close and a close."""

    async def shielded(message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.body" and not message.get("more_body", False):
            with trio.CancelScope(shield=True):
                await send(message)
        else:
            await send(message)

    return shielded


# ---- the app -------------------------------------------------------------------------------------

class ShoalApp(QuartTrio):
    """The node's app: QuartTrio whose requests have bounded bodies, read with backpressure."""

    asgi_http_class = BackpressureConnection
    request_class = BoundedRequest

    def __init__(self, *args: Any, body_buffer: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: bytes a request body may queue unread before receiving waits; None: BoundedBody.limit
        self.body_buffer = body_buffer
        self._hooks_under: list[tuple[str, Callable[[Response], Awaitable[Response]]]] = []

    def after_request_under(self, prefix: str) -> Callable:
        """Like ``after_request``, but the hook runs only for a path at or under ``prefix``
        (routed or not, so a 404 there gets it too); other requests never call it."""

        def deco(fn: Callable[[Response], Awaitable[Response]]) -> Callable:
            self._hooks_under.append((prefix, fn))
            return fn
        return deco

    async def run_hooks_under(self, path: str, resp: Response) -> Response:
        for prefix, hook in self._hooks_under:
            if path == prefix or path.startswith(prefix + "/"):
                resp = await hook(resp)
        return resp


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
        resp = await app.run_hooks_under(request.path, resp)  # e.g. tus's headers under /v1/uploads
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
