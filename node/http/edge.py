"""What every connection and every answer gets at the HTTP edge, whichever path serves it (the fast
lane, node.http.fastlane, or the quart app, node.http.app): a guarded connection, the CORS
headers, and one access record.

The guard
---------

One connection's handling can never take the node down: serialised sends and a guard.
hypercorn's trio ``TCPServer`` sends answers under its own lock, but closes a connection with
``send_eof()`` outside that lock, and trio's ``SocketStream.send_eof`` holds the stream's
"one sender at a time" detector across a checkpoint.  So when h11 refuses a request while the
app is still answering it (a chunked POST whose chunk size is 40 hex digits), the app's
``send_all`` can meet the close's ``send_eof`` and raise ``trio.BusyResourceError``; hypercorn
catches only ``BrokenResourceError``/``ClosedResourceError`` there, the error left the
connection's task group and then ``trio.run``, and the node process exited.

Two fixes, both applied to every plain or TLS connection by node.http.patches.serving, with the
fast lane on or off:

- :class:`SerialStream`: every send (``send_all``, ``send_eof``,
  ``wait_send_all_might_not_block``) of one connection takes one lock, so two tasks never send
  at once; a send after the EOF gets ``ClosedResourceError``, which hypercorn handles.
- :func:`guarded`: an exception out of one connection's handling is logged
  (``connection_error``) and closes that connection only; it never reaches the listeners'
  nursery.  Cancellation (``BaseException``) still propagates: shutdown stays shutdown.

CORS
----

The one list of headers and the origin rule, for the app and the fast lane alike.
Pure functions (no I/O); tests/unit/node/http/test_cors.py has their tables and compares the
app's answers with the fast lane's.

- ``answer_headers(origins, origin)``: what every answer carries.  With ``origins == ("*",)``
  (the default, ``cors: {origins: ["*"]}``) that is ``Access-Control-Allow-Origin: *`` and the
  exposed headers, whatever the request's ``Origin``.  With a list, an allowed ``Origin`` is
  echoed with the exposed headers; any other (or none) gets no CORS header at all, which a
  browser treats as a refusal.  Invariant: with a list, every answer says ``Vary: Origin`` (the
  answer depends on it, so a shared cache must not hand one origin's answer to another).
- ``preflight_headers(origins, origin)``: the answer to a browser's preflight (``OPTIONS``
  with ``Access-Control-Request-Method``) to a routed path: the answer headers plus
  ``Access-Control-Allow-Methods`` (``METHODS``, one list for every path: a method a path does
  not serve is then answered 405 in the contract's shape, readable by the page),
  ``-Allow-Headers`` and ``-Max-Age``; a refused origin gets only what ``answer_headers`` gives.

Writes need the bearer token whatever the origin; the allow-list only decides which pages may
read the answers.  The node-to-node routes (``/v1/internal/``, :func:`internal`) get no CORS
header and no preflight answer at all: no page has any business calling them.

The access record
-----------------

Every HTTP request, on either path, is measured once and logged in one line.

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
import traceback
from typing import Any, Awaitable, Callable

import trio

from node import log
from node.metrics import NodeMetrics


# ---- the guard: serialised sends, and one connection's failure stays its own ---------------------

class SerialStream:
    """``stream`` with its sends serialised by one lock; everything else is the stream's own
    (hypercorn tells TLS from plain TCP by ``do_handshake`` being there or not)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._send_lock = trio.Lock()

    def __getattr__(self, name: str) -> Any:  # socket, do_handshake, transport_stream, ...
        return getattr(self._stream, name)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes) -> None:
        async with self._send_lock:
            await self._stream.send_all(data)

    async def send_eof(self) -> None:
        async with self._send_lock:
            await self._stream.send_eof()

    async def wait_send_all_might_not_block(self) -> None:
        async with self._send_lock:
            await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


Server = Callable[..., Awaitable[None]]


def guarded(server: Server) -> Server:
    """hypercorn's ``TCPServer(app, config, context, state, stream)`` on a :class:`SerialStream`,
    with any exception of that connection logged and ending that connection only."""

    async def connection(app: Any, config: Any, context: Any, state: Any, stream: Any) -> None:
        try:
            await server(app, config, context, state, SerialStream(stream))
        except Exception as e:  # an ExceptionGroup of Exceptions too; Cancelled is a BaseException
            log.error("connection_error", error=f"{type(e).__name__}: {e}",
                      trace=traceback.format_exc(limit=8))
            with trio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except Exception:  # already broken: nothing more to close
                    pass

    connection.wrapped = server  # type: ignore[attr-defined]
    return connection


# ---- CORS ----------------------------------------------------------------------------------------

ANY = "*"
EXPOSE_HEADERS = ("Location, ETag, Content-Range, Accept-Ranges, Upload-Offset, Upload-Length, "
                  "Upload-Metadata, Upload-Expires, Tus-Resumable, Tus-Version, Tus-Extension, "
                  "Tus-Max-Size, Tus-Checksum-Algorithm, Retry-After, X-Served-By")
# Request headers a page may send (one list for every route: the videos API, HLS, tus).
ALLOW_HEADERS = ("Authorization, Content-Type, Range, If-None-Match, If-Match, Upload-Length, "
                 "Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, Upload-Concat, "
                 "Tus-Resumable, X-Requested-With, X-HTTP-Method-Override")
MAX_AGE = "86400"  # browsers cache a preflight answer for up to a day (most cap it lower)
# Every method a route serves (Access-Control-Allow-Methods on every preflight).
METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"


INTERNAL_PREFIX = "/v1/internal/"


def internal(path: str) -> bool:
    """A node-to-node route (answered without CORS headers)."""
    return path.startswith(INTERNAL_PREFIX)


def allows(origins: tuple[str, ...], origin: str | None) -> bool:
    """True when a page at ``origin`` may read answers (always with ``*``)."""
    return ANY in origins or (origin is not None and origin in origins)


def answer_headers(origins: tuple[str, ...], origin: str | None) -> list[tuple[str, str]]:
    """The CORS headers of an ordinary answer to a request with ``Origin: origin`` (or none)."""
    if ANY in origins:
        return [("Access-Control-Allow-Origin", ANY), ("Access-Control-Expose-Headers", EXPOSE_HEADERS)]
    if origin is not None and origin in origins:
        return [("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", EXPOSE_HEADERS),
                ("Vary", "Origin")]
    return [("Vary", "Origin")]


def preflight_headers(origins: tuple[str, ...], origin: str | None) -> list[tuple[str, str]]:
    """The headers of a 204 preflight answer to a routed path."""
    headers = [h for h in answer_headers(origins, origin) if h[0] != "Access-Control-Expose-Headers"]
    if not allows(origins, origin):
        return headers
    return headers + [("Access-Control-Allow-Methods", METHODS),
                      ("Access-Control-Allow-Headers", ALLOW_HEADERS),
                      ("Access-Control-Max-Age", MAX_AGE)]


def is_preflight(method: str, request_method: str | None) -> bool:
    """A browser's preflight: ``OPTIONS`` naming the method it means to send."""
    return method == "OPTIONS" and bool(request_method)


# ---- the access record ---------------------------------------------------------------------------

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
