"""JSON documents changed only by compare-and-swap.

A document is created with ``If-None-Match: *`` and replaced with
``If-Match: <etag>``.  :func:`update` is the re-read-and-decide loop: it
reads the current version, asks ``decide`` what the next version is, and
writes it conditionally; when another writer got there first (412) it reads
again and asks again.  ``decide`` is pure and may be called several times.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Callable

import trio

from .errors import NotFound, PreconditionFailed, StorageError
from .store import ObjectStore


class Keep:
    """Returned by ``decide`` to leave the document as it is (no write)."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Keep({self.reason!r})"


class CasExhausted(StorageError):
    """Too many writers raced on one document; the caller should back off."""


@dataclass(frozen=True)
class Versioned:
    doc: dict[str, Any]
    etag: str


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode(body: bytes) -> dict[str, Any]:
    return json.loads(body)


async def read(store: ObjectStore, key: str) -> Versioned | None:
    try:
        body, etag = await store.get(key)
    except NotFound:
        return None
    return Versioned(decode(body), etag)


async def create(store: ObjectStore, key: str, doc: dict[str, Any]) -> Versioned:
    """Create only if absent; raises PreconditionFailed if it exists."""
    etag = await store.put(key, encode(doc), if_none_match=True, content_type="application/json")
    return Versioned(doc, etag)


Decision = "dict[str, Any] | Keep"


async def update(store: ObjectStore, key: str,
                 decide: Callable[[dict[str, Any] | None], "dict[str, Any] | Keep"], *,
                 attempts: int = 8, rng: random.Random | None = None,
                 ) -> tuple[Versioned | None, bool]:
    """Read, decide, write conditionally; on a lost race read again.

    ``decide(current_doc_or_None)`` returns the new document, or ``Keep``.
    Returns ``(final version or None, wrote)``.  Raises :class:`CasExhausted`
    after ``attempts`` lost races (bounded, with a small jittered pause).
    """
    rng = rng or random.Random()
    for attempt in range(attempts):
        cur = await read(store, key)
        new = decide(None if cur is None else cur.doc)
        if isinstance(new, Keep):
            return cur, False
        try:
            if cur is None:
                etag = await store.put(key, encode(new), if_none_match=True,
                                       content_type="application/json")
            else:
                etag = await store.put(key, encode(new), if_match=cur.etag,
                                       content_type="application/json")
            return Versioned(new, etag), True
        except PreconditionFailed:
            await trio.sleep(rng.uniform(0, 0.02 * (attempt + 1)))
    raise CasExhausted(f"{key}: lost {attempts} compare-and-swap races in a row")
