"""Node-to-node requests signed with the cluster key.  Pure: the clock is the caller's.

A node proves to another that it holds the cluster key (``cfg.cluster_key()``; never the client
token) with one header on every internal request (the owner hop and the eviction notice)::

    X-Shoal-Hop: <unix seconds>.<hex HMAC-SHA256(key, "<unix seconds>\\n<METHOD>\\n<path>")>

The receiver recomputes the MAC over the method and path it was asked for and accepts the header
only within ``WINDOW`` seconds of its own clock (either side), so a captured header is good for
one path and one minute at most.  Who raises what: :func:`verify` raises :class:`MissingProof`
(no header: HTTP 401 ``unauthorized``) or :class:`BadProof` (malformed, out of the window, or
a MAC that does not match: HTTP 403 ``forbidden``).

A cluster without a key (``auth: none``) has unauthenticated hops: :func:`sign` is then not
called and :func:`verify` not asked (``needs_proof(None)`` is False).
"""

from __future__ import annotations

import hashlib
import hmac
import re

HEADER = "X-Shoal-Hop"
WINDOW = 30.0  # seconds either side of the receiver's clock
_PROOF = re.compile(r"(\d{1,12})\.([0-9a-f]{64})")


class PeerAuthError(Exception):
    """An internal request without a valid proof of the cluster key."""


class MissingProof(PeerAuthError):
    """No X-Shoal-Hop header."""


class BadProof(PeerAuthError):
    """An X-Shoal-Hop header that does not prove the key for this request now."""


def needs_proof(key: bytes | None) -> bool:
    return bool(key)


def _mac(key: bytes, ts: str, method: str, path: str) -> str:
    return hmac.new(key, f"{ts}\n{method.upper()}\n{path}".encode("utf-8"), hashlib.sha256).hexdigest()


def sign(key: bytes, method: str, path: str, now: float) -> str:
    """The header value for ``method path`` at unix time ``now``."""
    ts = str(int(now))
    return f"{ts}.{_mac(key, ts, method, path)}"


def verify(key: bytes, header: str | None, method: str, path: str, now: float) -> None:
    """Returns when ``header`` proves ``key`` for ``method path`` at ``now``; raises otherwise."""
    if header is None or header == "":
        raise MissingProof("an internal request needs the X-Shoal-Hop header")
    m = _PROOF.fullmatch(header.strip())
    if m is None:
        raise BadProof("malformed X-Shoal-Hop header")
    ts, mac = m.groups()
    if abs(now - int(ts)) > WINDOW:
        raise BadProof("X-Shoal-Hop header outside the time window")
    if not hmac.compare_digest(mac, _mac(key, ts, method, path)):
        raise BadProof("X-Shoal-Hop header does not match")


def check(key: bytes | None, header: str | None, method: str, path: str, now: float) -> None:
    """:func:`verify` where the cluster has a key; nothing to check without one (``auth: none``)."""
    if needs_proof(key):
        verify(key, header, method, path, now)  # type: ignore[arg-type]
