"""Where an upload lands: the one-shot upload streamed into storage, and the owner told.

The one-shot upload (``POST /v1/videos``, :func:`ingest`) streams a request body into
``videos/<id>/source`` and creates the video's record, ``uploaded``.

Nothing is promised (and nothing is visible) until the multipart upload is complete and the record
exists.  With an Idempotency-Key, a retry returns the first video: the key's small document
(``layout.idem_key``) is created with If-None-Match after the source is complete and before the
record, so of two racing requests with one key exactly one keeps its video.

Refusals are :mod:`node.upload.errors` (BodyTooShort, BodyTooLong, UploadInProgress); StorageError
passes through.  A streamed part that had to be sent again is told to ``on_resend``.

:class:`OwnerNotifier`: after an upload lands on a node that does not own the video, it tells
the owner at once (``POST /v1/internal/wake``), the fast path; the owner's next scan would find
it anyway.  A service with a bounded queue, so a request never waits on another node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import httpx
import trio

import storage
from storage import cas

from node import log, peer_auth
from node.config import Config
from node.records import VideoStore, layout, lifecycle
from node.records.lifecycle import Record
from node.upload.errors import BodyTooLong, BodyTooShort, UploadInProgress
from node.upload.tus_uploads import log_part_resent

WAKE_TIMEOUT = 1.0
WAKE_PATH = "/v1/internal/wake"
WAKE_QUEUE = 256  # uploads waiting to be told to their owner; beyond it the local scan does it
WAKE_CONCURRENCY = 8  # notifications in flight at once


@dataclass
class IngestResult:
    record: Record
    created: bool  # False: an Idempotency-Key retry answered with the existing video


async def ingest(videos: VideoStore, body: AsyncIterator[bytes], *, content_length: int,
                 filename: str | None, idempotency_key: str | None, part_size: int,
                 parts_in_flight: int = 2, on_resend: storage.OnResend = log_part_resent) -> IngestResult:
    """Stream ``body`` (exactly ``content_length`` bytes) into a new video's source, in parts of
    ``part_size`` (larger when the object would need more than ``storage.MAX_PARTS``), at most
    ``parts_in_flight`` in flight; then create its record.  An Idempotency-Key retry returns the
    first video (``created`` False)."""
    store = videos.store
    if idempotency_key is not None:
        existing = await _idempotent_lookup(videos, idempotency_key)
        if existing is not None:
            return IngestResult(existing, False)
    vid = layout.new_id(videos.clock())
    key = layout.source_key(vid)
    async with storage.StreamingUpload(store, key, part_size=storage.part_size_for(content_length, part_size),
                                       parts_in_flight=parts_in_flight, total=content_length,
                                       on_resend=on_resend) as up:
        async for chunk in body:
            if up.size + len(chunk) > content_length:
                raise BodyTooLong(f"body is longer than Content-Length ({content_length} bytes)")
            await up.write(chunk)
        if up.size != content_length:
            raise BodyTooShort(f"body ended after {up.size} of {content_length} bytes")
        await up.complete(if_none_match=True)
    sha = up.sha256.hexdigest()
    if idempotency_key is not None:
        try:
            await cas.create(store, layout.idem_key(idempotency_key), {"id": vid, "at": videos.clock()})
        except storage.PreconditionFailed:
            # a concurrent request with the same key won: ours is garbage
            with trio.CancelScope(shield=True):
                await store.delete(key)
            existing = await _idempotent_lookup(videos, idempotency_key)
            if existing is None:
                raise UploadInProgress("another upload with this Idempotency-Key is finishing; retry")
            return IngestResult(existing, False)
    rec = lifecycle.new_record(vid, videos.node_id, videos.clock(), state=lifecycle.UPLOADED,
                               filename=filename, size=content_length, sha256=sha)
    await videos.create(rec)
    return IngestResult(rec, True)


async def _idempotent_lookup(videos: VideoStore, client_key: str) -> Record | None:
    m = await cas.read(videos.store, layout.idem_key(client_key))
    if m is None:
        return None
    vid = m.doc["id"]
    v = await videos.get(vid)
    if v is not None:
        return v.doc
    # The first request stored the source and the key, then died before the record:
    # finish its work (the record create is itself idempotent by If-None-Match).
    info = await videos.store.head(layout.source_key(vid))
    rec = lifecycle.new_record(vid, videos.node_id, videos.clock(), state=lifecycle.UPLOADED,
                               filename=None, size=info.size)
    try:
        await videos.create(rec)
    except storage.PreconditionFailed:
        v = await videos.get(vid)
        assert v is not None
        return v.doc
    return rec


class OwnerNotifier:
    """Tells a video's ring owner that its source landed here (best effort, bounded)."""

    def __init__(self, cfg: Config, node_id: str, cluster_key: bytes | None,
                 owner_of: Callable[[str], str | None], poke: Callable[[], None]) -> None:
        self._cfg = cfg
        self._node_id = node_id
        self._key = cluster_key  # the wake is a hop between nodes: proven with the cluster key
        self._owner_of = owner_of  # the ring's owner of a video (node.cluster.Cluster.owner_of)
        self._poke = poke  # this node's worker: look at the pending index now
        self._send, self._receive = trio.open_memory_channel[str](WAKE_QUEUE)

    def notify(self, vid: str) -> None:
        """Never waits: :meth:`serve` finds the owner and tells it (or pokes our own worker when
        we own ``vid``); when the queue is full or the service is not running, our own worker
        looks at once and applies the ring rules."""
        try:
            self._send.send_nowait(vid)
        except (trio.WouldBlock, trio.ClosedResourceError):
            log.warning("owner_notify_dropped", video=vid, reason="queue full")
            self._poke()

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        limit = trio.Semaphore(WAKE_CONCURRENCY)
        async with httpx.AsyncClient(timeout=WAKE_TIMEOUT) as client, trio.open_nursery() as nursery:
            task_status.started()
            async for vid in self._receive:
                await limit.acquire()
                nursery.start_soon(self._wake, client, limit, vid)

    async def _wake(self, client: httpx.AsyncClient, limit: trio.Semaphore, vid: str) -> None:
        try:
            owner = self._owner_of(vid)
            if owner is None or owner == self._node_id:
                self._poke()
                return
            url = self._cfg.node(owner).url + WAKE_PATH
            headers = ({peer_auth.HEADER: peer_auth.sign(self._key, "POST", WAKE_PATH, time.time())}
                       if peer_auth.needs_proof(self._key) else {})
            try:
                r = await client.post(url, json={"video": vid}, headers=headers)
                if r.status_code >= 400:
                    log.warning("owner_notify_failed", video=vid, owner=owner, status=r.status_code)
                    self._poke()
                else:
                    log.info("owner_notified", video=vid, owner=owner)
            except httpx.HTTPError as e:
                log.warning("owner_notify_failed", video=vid, owner=owner, error=type(e).__name__)
                self._poke()  # our own scan will apply the ring rules
        finally:
            limit.release()
