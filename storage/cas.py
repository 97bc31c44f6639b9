"""JSON documents changed only by compare-and-swap.

A document is created with ``If-None-Match: *`` and replaced with
``If-Match: <etag>``.  :func:`update` is the one re-read-and-decide loop: it
reads the current version, asks ``decide`` what the next version is, and
writes it conditionally; when another writer got there first (412) it reads
again and asks again.  ``decide`` is pure and may be called several times.

A caller that remembers the version it wrote last passes it as ``known``: the
first decision is then made on it and written with ``If-Match`` without a read
(one request instead of two when nobody else wrote meanwhile).  A remembered
version is only believed current, so it never decides an outcome alone: a lost
write (412), a ``Keep`` or an exception from ``decide`` on it is decided again
on a fresh read.
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
                 attempts: int = 8, rng: random.Random | None = None, known: Versioned | None = None,
                 ) -> tuple[Versioned | None, bool]:
    """Read, decide, write conditionally; on a lost race read again.

    ``decide(current_doc_or_None)`` returns the new document, or ``Keep``; what it
    raises propagates (but see ``known``).  ``known``: a version of the document
    believed current (the caller wrote it last); tried first, without a read.
    Returns ``(final version or None, wrote)``.  Raises :class:`CasExhausted`
    after ``attempts`` lost races on fresh reads (bounded, with a small jittered pause).
    """
    rng = rng or random.Random()
    if known is not None:
        written = await _write_on_known(store, key, decide, known)
        if written is not None:
            return written, True
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


async def _write_on_known(store: ObjectStore, key: str,
                          decide: Callable[[dict[str, Any] | None], "dict[str, Any] | Keep"],
                          known: Versioned) -> Versioned | None:
    """Decide on ``known`` and write with If-Match, no read; None: decide again on a fresh read."""
    try:
        new = decide(known.doc)
    except Exception:  # decided on a version that may be stale: ask again on a fresh one
        return None
    if isinstance(new, Keep):
        return None
    try:
        etag = await store.put(key, encode(new), if_match=known.etag, content_type="application/json")
    except PreconditionFailed:
        return None
    return Versioned(new, etag)
