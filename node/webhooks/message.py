"""What a receiver gets: the event's JSON body and the signature header over it.

Body (compact JSON, keys sorted, the same bytes on every re-send of the event)::

    {"epoch": 2, "event": "ready", "id": "<32 hex>", "state": "ready",
     "time": 1764500000.123, "video": "<26 chars>"}

Signature header (Stripe's scheme): ``X-Shoal-Signature: t=<unix seconds>,v1=<hex>`` where
``hex = HMAC-SHA256(secret, f"{t}.".encode() + body)``.  ``t`` is the time of the POST (each
re-send is signed anew), so a receiver can refuse old replays by ``t`` and duplicates by ``id``.
Pure: no clock is read here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGNATURE_HEADER = "X-Shoal-Signature"
EVENT_HEADER = "X-Shoal-Event"
EVENT_ID_HEADER = "X-Shoal-Event-Id"
ATTEMPT_HEADER = "X-Shoal-Delivery-Attempt"
BODY_FIELDS = ("id", "event", "video", "state", "epoch", "time")


def body_of(entry: dict[str, Any]) -> bytes:
    """The body of an outbox entry's event: only its public fields, canonical JSON."""
    return json.dumps({k: entry[k] for k in BODY_FIELDS}, sort_keys=True,
                      separators=(",", ":")).encode()


def _mac(secret: bytes, t: int, body: bytes) -> str:
    return hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, t: int) -> str:
    """The ``X-Shoal-Signature`` value for ``body`` sent at unix second ``t``."""
    return f"t={int(t)},v1={_mac(secret, int(t), body)}"


def verify(secret: bytes, header: str, body: bytes, *, now: float, tolerance: float = 300.0) -> bool:
    """Is ``header`` a signature of ``body`` with ``secret``, made within ``tolerance`` s of ``now``?"""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        k, sep, v = part.strip().partition("=")
        if sep:
            fields.setdefault(k, []).append(v)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - t) > tolerance:
        return False
    want = _mac(secret, t, body)
    return any(hmac.compare_digest(want, v) for v in fields.get("v1", []))
