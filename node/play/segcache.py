"""The owner's segment cache, and the one hop to it from every other node.

Committed HLS objects (playlists and segments under ``videos/<id>/out/<epoch>/``)
never change, so the storage key, which includes the epoch, is a perfect cache
key and nothing is ever invalidated; only space is reclaimed.

Where a read goes (``SegmentCache.fetch(vid, key) -> (bytes, etag)``)::

    this node owns vid (the ring of configured nodes stands in until the live ring runs)
        -> local cache: hit = read the file; miss = one storage read per key,
           however many readers wait on it (single flight), then kept on disk
    another node owns vid, and it is alive
        -> GET <owner>/v1/internal/objects/<vid>/<path under videos/<vid>/>
           within cfg.cache.hop_timeout; the owner answers from its cache and
           never hops again
    the owner is dead, slow or errs
        -> storage directly (a "hop fallback"); this node does not cache

Who owns a video and where the other alive nodes listen is a :class:`Peers` snapshot, handed
to :meth:`SegmentCache.follow` after every membership change (node.compose wires it to
node.cluster): a request reads it, never rebuilds it, and never asks the membership.

Bytes and ETag are the storage object's either way.  The owner checks a body it
reads from storage against its ETag when that is a plain MD5 (single-part
objects) before keeping it, and writes cache files whole (temporary file, then
rename); a hop answer is read to its exact ``Content-Length`` and trusted (MD5 of
every hop answer cost a non-owner 0.9 ms of CPU per 770 KB segment: half its
throughput, docs/benchmarks.md).

The cache on disk is bounded in bytes (``cfg.cache.max_bytes``) with LRU
eviction (:class:`LruIndex`, pure).  The index lives in memory: the directory is
emptied when the node starts.  An object larger than the whole cache is served
but not kept.

Deleting a video: the node answering the DELETE drops the video's objects from its
cache (:meth:`SegmentCache.evict_video`) and tells every other alive member to do
the same (:meth:`SegmentCache.tell_peers_evict`, ``POST /v1/internal/evict``, best
effort, each within ``cfg.cache.hop_timeout``).  That notice only frees space
early: every path that answers from the cache asks the ready-record memo
(node.play.answers) first, so a lost notice does not make a deleted video playable.

Node-to-node requests carry ``X-Shoal-Hop`` signed with the cluster key
(node.peer_auth) when the cluster has one.

Errors: :class:`storage.NotFound` and :class:`storage.StorageUnavailable` from
the storage read pass through; hop failures never surface (they fall back).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import ring
import storage
from storage.http1 import ClientError, Http1Client

from node.records import layout

from node import log, peer_auth

HOP_HEADER = peer_auth.HEADER  # proves the cluster key; the owner never hops on such a request
INTERNAL_PREFIX = "/v1/internal/objects"
EVICT_PATH = "/v1/internal/evict"
EVICT_QUEUE = 256  # eviction notices waiting to be sent
EVICT_CONCURRENCY = 4  # videos whose notices are sent at once
# out/<epoch>/<hls path>, or a chunked video's segment: chunks/<unit>/<epoch>/<hls path>
_INTERNAL_REST = re.compile(r"(?:out|chunks/(?:[0-9]{5}|audio))/([0-9]{1,12})/(.+)")
_PLAIN_MD5_ETAG = re.compile(r'"?([0-9a-f]{32})"?')


@dataclass(frozen=True)
class Peers:
    """The cluster as playback sees it, rebuilt on a membership change: the ring of alive
    members, and the HTTP address of every other alive member (no entry: not alive)."""

    ring: ring.Ring
    addrs: dict[str, str]  # node id -> "host:port"


# ---- pure LRU index ---------------------------------------------------------------------------------

class LruIndex:
    """Which keys are cached, their sizes and ETags, least recently used first.  Pure.

    ``admit`` returns the keys to evict (their files are the caller's to delete).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self.bytes = 0  # Invariant: sum of sizes in _items, and <= max_bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        return list(self._items)

    def lookup(self, key: str) -> str | None:
        """The ETag of a cached key, marking it most recently used; None when absent."""
        item = self.entry(key)
        return None if item is None else item[1]

    def entry(self, key: str) -> tuple[int, str] | None:
        """``(size, etag)`` of a cached key, marking it most recently used; None when absent."""
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def fits(self, size: int) -> bool:
        return size <= self.max_bytes

    def admit(self, key: str, size: int, etag: str) -> list[str]:
        """Add ``key``; evict least recently used keys until it fits.  Returns the evicted keys."""
        if not self.fits(size):
            raise ValueError(f"{size} bytes exceed the cache ({self.max_bytes})")
        self.discard(key)
        evicted = []
        while self.bytes + size > self.max_bytes:
            old, (old_size, _) = self._items.popitem(last=False)
            self.bytes -= old_size
            evicted.append(old)
        self._items[key] = (size, etag)
        self.bytes += size
        return evicted

    def keys_under(self, prefix: str) -> list[str]:
        return [k for k in self._items if k.startswith(prefix)]

    def discard(self, key: str) -> bool:
        item = self._items.pop(key, None)
        if item is None:
            return False
        self.bytes -= item[0]
        return True


# ---- statistics -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheStatistics:
    hits: int  # local reads answered from the disk cache
    misses: int  # local reads that filled the cache from storage
    coalesced: int  # local readers that waited on another reader's fill (no storage read of their own)
    storage_reads: int  # storage GETs made by the cache (fills and fallbacks)
    owner_hops: int  # reads answered by the owner in one hop
    hop_fallbacks: int  # reads that went to storage because the owner was dead, slow or erred
    peer_requests: int  # internal requests this node answered for other nodes
    evictions: int
    entries: int
    bytes_cached: int
    max_bytes: int
    deleted_evictions: int = 0  # objects dropped because their video was deleted


class _Flight:
    """One storage read in progress for a key; later readers wait on ``done``."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: tuple[bytes, str] | None = None
        self.error: storage.StorageError | None = None


def _file_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def etag_matches_body(etag: str, body: bytes) -> bool:
    """False only when the ETag is a plain MD5 that the body does not have (multipart ETags pass)."""
    m = _PLAIN_MD5_ETAG.fullmatch(etag)
    return m is None or hashlib.md5(body).hexdigest() == m.group(1)


def internal_path(vid: str, key: str) -> str:
    """The owner's URL path for a storage key under ``videos/<vid>/``."""
    prefix = layout.video_prefix(vid)
    if not key.startswith(prefix):
        raise ValueError(f"{key!r} is not under {prefix!r}")
    return f"{INTERNAL_PREFIX}/{vid}/{key[len(prefix):]}"


def internal_key(vid: str, rest: str) -> str | None:
    """The storage key an internal request names, or None unless it is a committed output's path
    (HLS, or the poster)."""
    m = _INTERNAL_REST.fullmatch(rest)
    if not layout.valid_id(vid) or m is None or not layout.valid_output_path(m.group(2)):
        return None
    return layout.video_prefix(vid) + rest


def internal_hls_path(rest: str) -> str | None:
    """The HLS path (``<rendition>/seg_NNNNN.ts``, a playlist) an internal request's
    ``out/<epoch>/...`` or ``chunks/<unit>/<epoch>/...`` names, or None.  Pure."""
    m = _INTERNAL_REST.fullmatch(rest)
    return m.group(2) if m is not None else None


# ---- the cache ----------------------------------------------------------------------------------------

class SegmentCache:
    """``fetch(vid, key)`` from wherever is cheapest; see the module docstring.

    ``ctx`` gives cfg, node_id, store, data_dir and cluster_key (node.compose.CacheSources);
    ``peers``: the cluster to start with (None: every configured node, as without gossip).
    """

    def __init__(self, ctx: Any, directory: Path | None = None, *, peers: Peers | None = None) -> None:
        self._ctx = ctx
        self.dir = Path(directory) if directory is not None else Path(ctx.data_dir) / "cache"
        shutil.rmtree(self.dir, ignore_errors=True)  # the index is in memory: start empty
        self.dir.mkdir(parents=True, exist_ok=True)
        self._index = LruIndex(ctx.cfg.cache.max_bytes)
        self._flights: dict[str, _Flight] = {}
        self._client: Http1Client | None = None
        self._key: bytes | None = getattr(ctx, "cluster_key", None)  # None: hops unauthenticated
        # eviction notices after a DELETE, sent by serve(); bounded (a dropped one costs disk space)
        self._notices_send, self._notices_receive = trio.open_memory_channel[str](EVICT_QUEUE)
        self._peers = peers if peers is not None else self._configured_peers()
        self._n = dict(hits=0, misses=0, coalesced=0, storage_reads=0, owner_hops=0, hop_fallbacks=0,
                       peer_requests=0, evictions=0, deleted_evictions=0)

    # ---- public ----------------------------------------------------------------------------------------
    def statistics(self) -> CacheStatistics:
        return CacheStatistics(**self._n, entries=len(self._index), bytes_cached=self._index.bytes,
                               max_bytes=self._index.max_bytes)

    def follow(self, peers: Peers) -> None:
        """Adopt the cluster after a membership change (called by node.cluster's listener)."""
        self._peers = peers

    def _configured_peers(self) -> Peers:
        """Until gossip runs, every configured node counts as alive, as membership says; a node
        that is down then costs one refused connection and a read from storage."""
        cfg = self._ctx.cfg
        return Peers(ring.Ring({n.id: n.weight for n in cfg.nodes}),
                     {n.id: n.http_addr for n in cfg.nodes if n.id != self._ctx.node_id})

    def owner_of(self, vid: str) -> str:
        """The ring owner of ``vid`` (this node when the ring is empty)."""
        try:
            return self._peers.ring.owner(vid) or self._ctx.node_id
        except Exception as e:  # an empty or rebuilding ring: serve locally
            log.debug("cache_no_owner", video=vid, error=str(e))
            return self._ctx.node_id

    async def fetch(self, vid: str, key: str) -> tuple[bytes, str]:
        owner = self.owner_of(vid)
        if owner == self._ctx.node_id:
            return await self.fetch_local(key)
        hopped = await self._hop(owner, vid, key)
        if hopped is not None:
            self._n["owner_hops"] += 1
            return hopped
        self._n["hop_fallbacks"] += 1
        return await self._read_storage(key)

    async def serve_peer(self, key: str) -> tuple[bytes, str]:
        """An internal request from another node: answer from the local cache, never hop."""
        self._n["peer_requests"] += 1
        return await self.fetch_local(key)

    def holds(self, key: str) -> bool:
        """Is ``key`` in this node's cache now?  (Nothing counted; the HTTP edge classes a request
        by it.)"""
        return key in self._index

    def local_file(self, vid: str, key: str) -> tuple[Path, int, str] | None:
        """``(file, size, etag)`` when this node owns ``vid`` and holds ``key``: a hit for the
        fast lane (node.http.fastlane) to send from the file itself.  None otherwise (nothing counted)."""
        if self.owner_of(vid) != self._ctx.node_id:
            return None
        return self._file_hit(key)

    def peer_file(self, key: str) -> tuple[Path, int, str] | None:
        """As :meth:`local_file` for another node's hop to us (no ownership check, as serve_peer)."""
        hit = self._file_hit(key)
        if hit is not None:
            self._n["peer_requests"] += 1
        return hit

    def _file_hit(self, key: str) -> tuple[Path, int, str] | None:
        item = self._index.entry(key)
        if item is None:
            return None
        self._n["hits"] += 1
        return self.dir / _file_name(key), item[0], item[1]

    async def fetch_local(self, key: str) -> tuple[bytes, str]:
        """From the disk cache, filling it from storage on a miss; one storage read per key at a time."""
        while True:
            etag = self._index.lookup(key)
            if etag is not None:
                body = await self._read_file(key)
                if body is not None:
                    self._n["hits"] += 1
                    return body, etag
                continue  # evicted under us: look again
            flight = self._flights.get(key)
            if flight is not None:
                await flight.done.wait()
                if flight.result is not None:
                    self._n["coalesced"] += 1
                    return flight.result
                if flight.error is not None:
                    raise type(flight.error)(*flight.error.args)
                continue  # the filling reader was cancelled: one of us fills instead
            return await self._fill(key)

    def evict_video(self, vid: str) -> int:
        """Drop every cached object of ``vid`` (after its DELETE); returns how many."""
        keys = self._index.keys_under(layout.video_prefix(vid))
        for key in keys:
            self._index.discard(key)
            try:
                (self.dir / _file_name(key)).unlink()
            except FileNotFoundError:
                pass
        self._n["deleted_evictions"] += len(keys)
        log.info("cache_video_evicted", video=vid, objects=len(keys))
        return len(keys)

    def announce_deleted(self, vid: str) -> None:
        """Never waits: :meth:`serve` tells the other members to evict ``vid``.  A full queue
        drops the notice (logged): the 1 s ready-record memo still bounds what they serve."""
        try:
            self._notices_send.send_nowait(vid)
        except (trio.WouldBlock, trio.ClosedResourceError):
            log.warning("evict_notice_dropped", video=vid, reason="queue full")

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Send the eviction notices :meth:`announce_deleted` queued, a few videos at a time."""
        limit = trio.Semaphore(EVICT_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for vid in self._notices_receive:
                await limit.acquire()
                nursery.start_soon(self._tell_and_release, limit, vid)

    async def _tell_and_release(self, limit: trio.Semaphore, vid: str) -> None:
        try:
            await self.tell_peers_evict(vid)
        finally:
            limit.release()

    async def tell_peers_evict(self, vid: str) -> None:
        """Ask every other alive member to evict ``vid`` (best effort: each within hop_timeout;
        a lost notice costs space, never correctness)."""
        peers = [p for p in self._peers.addrs if p != self._ctx.node_id]
        body = json.dumps({"video": vid}).encode()
        async with trio.open_nursery() as n:
            for peer in peers:
                n.start_soon(self._tell_one, peer, vid, body)

    async def _tell_one(self, peer: str, vid: str, body: bytes) -> None:
        addr = self._peers.addrs.get(peer)
        if addr is None:
            return
        if self._client is None:
            self._client = Http1Client()
        why = "timeout"
        with trio.move_on_after(self._ctx.cfg.cache.hop_timeout):
            try:
                resp = await self._client.post(addr, EVICT_PATH, self._proof("POST", EVICT_PATH), body)
            except Exception as e:  # best effort in a background task: never take the node down
                why = f"{type(e).__name__}: {e}"
            else:
                if resp.status == 204:
                    return
                why = f"status {resp.status}"
        log.info("cache_evict_notice_failed", video=vid, peer=peer, reason=why)

    def _proof(self, method: str, path: str) -> dict[str, str]:
        """The X-Shoal-Hop header of a request to another node (none without a cluster key)."""
        if not peer_auth.needs_proof(self._key):
            return {}
        return {HOP_HEADER: peer_auth.sign(self._key, method, path, time.time())}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- local ----------------------------------------------------------------------------------------
    async def _fill(self, key: str) -> tuple[bytes, str]:
        flight = self._flights[key] = _Flight()
        try:
            body, etag = await self._read_storage(key)
            self._n["misses"] += 1
            if not await _etag_matches(etag, body):
                # never keep (and serve from here on, to every node) bytes storage did not vouch for
                raise storage.StorageError(f"{key}: the body read does not match its ETag {etag}")
            await self._keep(key, body, etag)
            flight.result = (body, etag)
            return body, etag
        except storage.StorageError as e:
            flight.error = e
            raise
        finally:
            del self._flights[key]
            flight.done.set()

    async def _read_storage(self, key: str) -> tuple[bytes, str]:
        self._n["storage_reads"] += 1
        return await self._ctx.store.get(key)

    async def _keep(self, key: str, body: bytes, etag: str) -> None:
        if not self._index.fits(len(body)):
            return
        path = self.dir / _file_name(key)
        tmp = path.with_suffix(".tmp")

        def write() -> None:
            tmp.write_bytes(body)
            os.replace(tmp, path)

        try:
            await trio.to_thread.run_sync(write)
        except OSError as e:  # a full or broken disk costs caching, never the read
            log.warning("cache_write_failed", key=key, error=str(e))
            return
        for old in self._index.admit(key, len(body), etag):
            self._n["evictions"] += 1
            try:
                (self.dir / _file_name(old)).unlink()
            except FileNotFoundError:
                pass

    async def _read_file(self, key: str) -> bytes | None:
        path = self.dir / _file_name(key)
        try:
            return await trio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            self._index.discard(key)
            return None

    # ---- one hop to the owner --------------------------------------------------------------------------
    async def _hop(self, owner: str, vid: str, key: str) -> tuple[bytes, str] | None:
        """The owner's answer, or None (dead, slow, erring, or a body that fails its ETag)."""
        addr = self._peers.addrs.get(owner)
        if addr is None:  # not alive in the last membership we were given
            return None
        if self._client is None:
            self._client = Http1Client()
        why = "timeout"
        path = internal_path(vid, key)
        with trio.move_on_after(self._ctx.cfg.cache.hop_timeout):
            try:
                resp = await self._client.get(addr, path, self._proof("GET", path))
            except ClientError as e:
                why = str(e)
            else:
                etag = resp.headers.get("etag")
                if resp.status == 200 and etag:
                    return resp.body, etag
                why = f"status {resp.status}" if resp.status != 200 else "no etag"
        log.info("cache_hop_failed", video=vid, owner=owner, key=key, reason=why)
        return None


async def _etag_matches(etag: str, body: bytes) -> bool:
    """:func:`etag_matches_body` on another core for bodies big enough to be worth the thread."""
    if len(body) < (64 << 10) or _PLAIN_MD5_ETAG.fullmatch(etag) is None:
        return etag_matches_body(etag, body)
    return await trio.to_thread.run_sync(etag_matches_body, etag, body)
