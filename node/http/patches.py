"""Every place Shoal reaches into a dependency's internals: what, why, and where it is applied.

Each entry of :data:`RELIED_ON` names one internal (not a documented API) that we patch,
subclass or call, with the shape we rely on; tests/unit/node/http/test_dependency_patches.py
checks every entry against the installed version, so an upgrade that moves one fails there, by
name, instead of misbehaving at run time.

hypercorn (0.18), applied by :func:`serving` for as long as the node serves:

- ``hypercorn.trio.tcp_server.MAX_RECV`` (a module global read on every socket receive) is raised
  from 64 KiB to :data:`RECV_SIZE`: upload bodies then cross h11, ASGI and the body queue in 4x
  fewer pieces (bench/ingest: node CPU 3.4 -> 2.8 s/GiB; 1 MiB gave 2.7 s/GiB but a peak RSS
  over 150 MiB).
- ``hypercorn.trio.run.TCPServer`` (the connection handler ``worker_serve`` hands to
  ``trio.serve_listeners`` as ``TCPServer(app, config, context, state, stream)``, read once when
  serving starts) is wrapped by node.http.edge's ``guarded`` (sends serialised, one
  connection's exception never escapes to the node; with the fast lane on or off), and by the fast
  lane (node.http.fastlane): cache hits of HLS objects are answered with sendfile before hypercorn
  sees the connection.

quart-trio (0.12) and Quart (0.22), applied by subclassing (node.http.app's ``ShoalApp``, the
node's app, and the body classes beside it):

- ``TrioASGIHTTPConnection.handle_request(nursery, request, send)`` and
  ``handle_messages(nursery, request, receive)``: replaced, so the receive loop stops while the
  body's buffer is full (quart-trio buffers a body without limit: 835 MiB for a 500 MB upload)
  and an early answer drains the rest of the body.  ``_send_response(send, response)`` is called,
  with the response's last send shielded from cancellation (hypercorn closes the connection
  inside it; see node.http.app ``_last_send_shielded``).
- ``ASGIHTTPConnection._create_request_from_scope(send)``: extended, to give each request's body
  its app's buffer limit.
- ``TrioBody`` (``_complete``, ``_has_data``, ``_must_raise``, ``_max_content_length``,
  ``set_complete``) and ``EventWrapper``: subclassed into a bounded body that hands chunks out
  without joining and copying them.
- ``TrioRequest.body_class`` and ``QuartTrio.asgi_http_class`` / ``request_class``: set to the above.

hashring (1.5), applied in ring/ring.py (``ring`` must not import the node, so the subclass lives
there; it is listed and checked here with the others):

- ``HashRing`` is subclassed without calling its ``__init__`` (which would regenerate the circle
  with its weight-normalised factor): we set ``ring``, ``_sorted_keys``, ``nodes`` and
  ``weights`` and use its ``get_node``, ``get_node_pos`` and ``gen_key`` over our circle.

botocore (1.40) and aiobotocore (2.25), used in storage/s3.py and storage/s3.py (``storage``
must not import the node either) for the raw UploadPart / PutObject requests:

- ``client._request_signer._credentials`` (``BaseClient`` and ``RequestSigner`` set them in
  ``__init__``) and aiobotocore's ``AioCredentials.get_frozen_credentials`` (a coroutine): the
  credentials the raw requests sign with.  Where they are missing, ``storage.open_store`` quietly
  keeps every request on aiobotocore (uploads then cost ~1.5 ms of CPU more per request): the
  test is what makes that loud.
- ``S3SigV4Auth(credentials, service_name, region_name).add_auth(request)`` over an
  ``AWSRequest`` whose ``context["client_config"]`` carries ``s3={"payload_signing_enabled":
  False}``: botocore then signs ``UNSIGNED-PAYLOAD`` (its S3 signer reads that from the context).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import hypercorn.trio.run
import hypercorn.trio.tcp_server

from node.http.edge import guarded

if TYPE_CHECKING:
    from node.http.fastlane import FastLane

RECV_SIZE = 1 << 18  # bytes per socket receive (hypercorn's own: 64 KiB)


@dataclass(frozen=True)
class Internal:
    """One internal we rely on: ``module`` + ``path`` (dotted, inside the module) is a
    ``kind`` ("global", "class", "function", "attribute"); a function's first parameters are
    ``params`` (``self`` left out)."""

    module: str
    path: str
    kind: str
    why: str
    params: tuple[str, ...] = ()


def _of(module: str, *entries: tuple[Any, ...]) -> tuple[Internal, ...]:
    """The internals of one ``module``: each entry is ``(path, kind, why[, params])``."""
    return tuple(Internal(module, *entry) for entry in entries)


RELIED_ON: tuple[Internal, ...] = (
    *_of("hypercorn.trio.tcp_server",
         ("MAX_RECV", "global", "raised to RECV_SIZE while serving"),
         ("TCPServer", "class", "the connection handler the fast lane wraps",
          ("app", "config", "context", "state", "stream"))),
    *_of("hypercorn.trio.run",
         ("TCPServer", "global", "worker_serve reads it when serving starts: the fast lane is put in front here")),
    *_of("quart_trio.asgi",
         ("TrioASGIHTTPConnection.handle_request", "function",
          "replaced: drains an unread body after an early answer", ("nursery", "request", "send")),
         ("TrioASGIHTTPConnection.handle_messages", "function",
          "replaced: stops receiving while the body buffer is full", ("nursery", "request", "receive")),
         ("TrioASGIHTTPConnection._send_response", "function", "called by our handle_request", ("send", "response")),
         ("TrioASGIHTTPConnection._create_request_from_scope", "function",
          "extended: each body gets its app's buffer limit", ("send",))),
    *_of("quart_trio.wrappers.request",
         ("TrioBody.__init__", "function", "BoundedBody calls it", ("expected_content_length", "max_content_length")),
         ("TrioBody.set_complete", "function", "BoundedBody extends it"),
         ("TrioBody._complete", "attribute", "an EventWrapper BoundedBody waits on"),
         ("TrioBody._has_data", "attribute", "an EventWrapper BoundedBody sets and clears"),
         ("TrioBody._must_raise", "attribute", "the error a body raises inside the app (413)"),
         ("TrioBody._max_content_length", "attribute", "the limit BoundedBody enforces while streaming"),
         ("EventWrapper", "class", "the re-armable event BoundedBody's drained flag is made of"),
         ("TrioRequest.body_class", "attribute", "set to BoundedBody by BoundedRequest")),
    *_of("quart_trio",
         ("QuartTrio.asgi_http_class", "attribute", "set to BackpressureConnection"),
         ("QuartTrio.request_class", "attribute", "set to BoundedRequest")),
    *_of("hashring",
         ("HashRing.get_node_pos", "function", "ring.ring._PlacedHashRing looks keys up with it", ("string_key",)),
         ("HashRing.get_node", "function", "lookup over our circle", ("string_key",)),
         ("HashRing.gen_key", "function", "the key hash we keep", ("key",)),
         ("HashRing.ring", "attribute", "set by _PlacedHashRing instead of HashRing.__init__ (point -> node)"),
         ("HashRing._sorted_keys", "attribute", "set by _PlacedHashRing (sorted points)"),
         ("HashRing.nodes", "attribute", "set by _PlacedHashRing"),
         ("HashRing.weights", "attribute", "set by _PlacedHashRing")),
    *_of("aiobotocore.client",
         ("AioBaseClient._request_signer", "attribute",
          "storage.s3 finds the client's credentials behind it for its raw requests")),
    *_of("aiobotocore.signers",
         ("AioRequestSigner._credentials", "attribute", "the credentials object storage.s3.frozen_credentials reads")),
    *_of("aiobotocore.credentials",
         ("AioCredentials.get_frozen_credentials", "function",
          "awaited by storage.s3.frozen_credentials (must be a coroutine)")),
    *_of("botocore.auth",
         ("S3SigV4Auth", "class", "storage.s3 signs its requests with it",
          ("credentials", "service_name", "region_name")),
         ("S3SigV4Auth.add_auth", "function", "storage.s3 signs a head", ("request",))),
    *_of("botocore.awsrequest",
         ("AWSRequest.context", "attribute",
          "storage.s3 puts client_config there: payload_signing_enabled=False -> UNSIGNED-PAYLOAD")),
)


@contextlib.contextmanager
def serving(lane: FastLane | None) -> Iterator[None]:
    """hypercorn as the node runs it, for the duration of the block: :data:`RECV_SIZE`
    receives, and ``lane`` (if any) in front of every plain TCP connection.  Restores both on
    exit, so nothing outlives the node that set it (tests run several in one process).  Every
    connection is :func:`~node.http.edge.guarded`, with or without the lane."""
    saved_recv = hypercorn.trio.tcp_server.MAX_RECV
    saved_server = hypercorn.trio.run.TCPServer
    hypercorn.trio.tcp_server.MAX_RECV = RECV_SIZE
    server = guarded(hypercorn.trio.tcp_server.TCPServer)
    hypercorn.trio.run.TCPServer = lane.wrap(server) if lane is not None else server
    try:
        yield
    finally:
        hypercorn.trio.tcp_server.MAX_RECV = saved_recv
        hypercorn.trio.run.TCPServer = saved_server
