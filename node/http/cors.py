"""CORS: the one list of headers and the origin rule, for the app and the fast lane alike.

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
"""

from __future__ import annotations

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
