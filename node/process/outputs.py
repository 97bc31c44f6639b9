"""Uploading one attempt's output files: every file at once, failures as themselves.

``put_each`` is used by the whole-video worker (node/process/worker.py) and by a unit of a
chunked video (node/process/chunk_worker.py).  Invariant: what escapes is a StorageError or an
OSError itself, never an ExceptionGroup of them, so the callers' ``except StorageError``
(release with backoff) holds; ``trio.Cancelled`` is never caught.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

import storage

# the Content-Type every output is stored with (S3 answers it to a direct reader)
CONTENT_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".jpg": "image/jpeg"}


async def put_each(put: Callable[[Path], Awaitable[None]], files: list[Path]) -> None:
    """``put`` every file concurrently (the caller bounds how many at once); then raise the first
    StorageError or OSError one of them met, as itself.

    Not a bare nursery: several puts failing at once (storage down) would leave it as an
    ExceptionGroup, which no ``except StorageError`` catches, and the worker (and the node) would
    die of it.  Found by the chaos run of chunked videos: a storage outage during uploads."""
    errors: list[Exception] = []

    async def one(f: Path) -> None:
        try:
            await put(f)
        except (storage.StorageError, OSError) as e:
            errors.append(e)

    async with trio.open_nursery() as n:
        for f in files:
            n.start_soon(one, f)
    if errors:
        raise errors[0]
