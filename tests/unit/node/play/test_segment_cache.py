"""The segment cache without a cluster: pure LRU tables, single flight on an in-memory store,
the hop's fallbacks and the internal-path mapping.  Real clusters: test_playback.py.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import trio

import storage
from node.records import layout
from node.config import CacheConfig, Config, NodeSpec
from node.play.segcache import (CacheStatistics, LruIndex, Peers, SegmentCache, etag_matches_body, internal_key,
                           internal_path)

VID = layout.new_id(1_700_000_000)
KEY = layout.out_prefix(VID, 3) + "360p/seg_00001.ts"


# ---- LruIndex, pure ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ops, keys, nbytes, evicted", [
    # (op, key, size) steps; then expected keys (LRU first), bytes, all evictions in order
    ([("a", "x", 4), ("a", "y", 4)], ["x", "y"], 8, []),
    ([("a", "x", 4), ("a", "y", 4), ("a", "z", 4)], ["y", "z"], 8, ["x"]),
    ([("a", "x", 4), ("a", "y", 4), ("l", "x", 0), ("a", "z", 4)], ["x", "z"], 8, ["y"]),
    ([("a", "x", 2), ("a", "y", 2), ("a", "z", 2), ("a", "big", 10)], ["big"], 10, ["x", "y", "z"]),
    ([("a", "x", 4), ("a", "x", 6)], ["x"], 6, []),
    ([("a", "x", 4), ("d", "x", 0), ("a", "y", 10)], ["y"], 10, []),
    ([("a", "x", 0), ("a", "y", 10)], ["x", "y"], 10, []),
])
def test_lru_admits_and_evicts_least_recently_used_first(ops, keys, nbytes, evicted):
    idx, out = LruIndex(10), []
    for op, key, size in ops:
        if op == "a":
            out += idx.admit(key, size, f'"{key}"')
        elif op == "l":
            assert idx.lookup(key) == f'"{key}"'
        else:
            assert idx.discard(key)
    assert idx.keys() == keys
    assert idx.bytes == nbytes <= idx.max_bytes
    assert out == evicted


def test_lru_refuses_an_object_larger_than_the_cache():
    idx = LruIndex(10)
    assert not idx.fits(11)
    with pytest.raises(ValueError):
        idx.admit("x", 11, '"x"')
    assert idx.lookup("x") is None and idx.bytes == 0


@pytest.mark.parametrize("etag, body, ok", [
    ('"' + hashlib.md5(b"abc").hexdigest() + '"', b"abc", True),
    ('"' + hashlib.md5(b"abc").hexdigest() + '"', b"abd", False),
    (hashlib.md5(b"abc").hexdigest(), b"abc", True),
    ('"0123456789abcdef0123456789abcdef-3"', b"anything", True),  # multipart: not an MD5 of the body
])
def test_etag_is_checked_against_the_body_when_it_is_an_md5(etag, body, ok):
    assert etag_matches_body(etag, body) is ok


@pytest.mark.parametrize("vid, rest, key", [
    (VID, "out/3/360p/seg_00001.ts", KEY),
    (VID, "out/3/master.m3u8", layout.out_prefix(VID, 3) + "master.m3u8"),
    (VID, "out/3/360p/index.m3u8", layout.out_prefix(VID, 3) + "360p/index.m3u8"),
    (VID, "record.json", None),
    (VID, "source", None),
    (VID, "out/3/../record.json", None),
    (VID, "out/x/master.m3u8", None),
    ("NOT-AN-ID", "out/3/master.m3u8", None),
])
def test_internal_requests_name_only_committed_output_paths(vid, rest, key):
    assert internal_key(vid, rest) == key


def test_internal_path_round_trips():
    path = internal_path(VID, KEY)
    assert path == f"/v1/internal/objects/{VID}/out/3/360p/seg_00001.ts"
    assert internal_key(VID, path.split(f"/{VID}/", 1)[1]) == KEY
    with pytest.raises(ValueError):
        internal_path(VID, "videos/other/out/1/master.m3u8")


# ---- SegmentCache on an in-memory store ------------------------------------------------------------

class SlowStore(storage.MemoryStore):
    """Every get takes ``delay`` seconds: long enough for readers to pile up on a cold key."""

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__()
        self.delay = delay

    async def get(self, key: str) -> tuple[bytes, str]:
        await trio.sleep(self.delay)
        return await super().get(key)


class Ring:
    def __init__(self, owner: str) -> None:
        self._owner = owner

    def owner(self, vid: str) -> str:
        return self._owner


def make_ctx(tmp_path, store, *, max_bytes=1 << 20, owner="n1", alive=("n1", "n2"), dead_port=None):
    nodes = (NodeSpec("n1", "127.0.0.1", 1, 2), NodeSpec("n2", "127.0.0.1", dead_port or 3, 4))
    cfg = replace(Config(nodes=nodes), cache=CacheConfig(max_bytes=max_bytes, hop_timeout=0.5))
    ctx = SimpleNamespace(cfg=cfg, node_id="n1", store=store, data_dir=tmp_path)
    # the cluster the cache follows: ``owner`` owns every video, ``alive`` are reachable
    ctx.peers = None if owner is None else Peers(
        Ring(owner), {n.id: n.http_addr for n in nodes if n.id in alive and n.id != "n1"})
    return ctx


def make_cache(ctx, directory=None) -> SegmentCache:
    return SegmentCache(ctx, directory, peers=ctx.peers)


async def put(store, key: str, body: bytes) -> str:
    return await store.put(key, body)


async def test_fifty_concurrent_readers_of_a_cold_segment_make_one_storage_read(tmp_path):
    # given a cold cache on the owner
    store = SlowStore()
    etag = await put(store, KEY, b"s" * 5000)
    cache = make_cache(make_ctx(tmp_path, store), tmp_path / "cache")
    results = []
    store.calls.clear()

    async def read():
        results.append(await cache.fetch(VID, KEY))

    # when 50 readers ask at once
    async with trio.open_nursery() as n:
        for _ in range(50):
            n.start_soon(read)
    # then storage was read once and every reader got the same bytes
    assert store.calls.count("get") == 1
    assert results == [(b"s" * 5000, etag)] * 50
    st = cache.statistics()
    assert (st.storage_reads, st.misses, st.coalesced, st.hits) == (1, 1, 49, 0)
    # and the next read is a hit from disk
    assert await cache.fetch(VID, KEY) == (b"s" * 5000, etag)
    assert store.calls.count("get") == 1 and cache.statistics().hits == 1
    assert (tmp_path / "cache").is_dir() and len(list((tmp_path / "cache").iterdir())) == 1


async def test_cache_stays_within_its_byte_bound_and_evicts_lru(tmp_path):
    store = storage.MemoryStore()
    keys = [layout.out_prefix(VID, 1) + f"360p/seg_{i:05d}.ts" for i in range(6)]
    for i, k in enumerate(keys):
        await put(store, k, bytes([i]) * 400)
    cache = make_cache(make_ctx(tmp_path, store, max_bytes=1000), tmp_path / "cache")
    for k in keys:
        body, _ = await cache.fetch(VID, k)
        st = cache.statistics()
        assert st.bytes_cached <= 1000
        assert sum(f.stat().st_size for f in (tmp_path / "cache").iterdir()) == st.bytes_cached
    st = cache.statistics()
    assert (st.entries, st.bytes_cached, st.evictions, st.misses) == (2, 800, 4, 6)
    # the last two are hits; the first was evicted and is read from storage again
    await cache.fetch(VID, keys[-1])
    await cache.fetch(VID, keys[0])
    st = cache.statistics()
    assert (st.hits, st.misses) == (1, 7)


async def test_an_object_larger_than_the_cache_is_served_but_not_kept(tmp_path):
    store = storage.MemoryStore()
    await put(store, KEY, b"x" * 2000)
    cache = make_cache(make_ctx(tmp_path, store, max_bytes=1000), tmp_path / "cache")
    assert (await cache.fetch(VID, KEY))[0] == b"x" * 2000
    assert cache.statistics().entries == 0 and not list((tmp_path / "cache").iterdir())


async def test_not_found_reaches_every_waiting_reader_and_is_not_cached(tmp_path):
    store = SlowStore()
    cache = make_cache(make_ctx(tmp_path, store), tmp_path / "cache")
    errors = []

    async def read():
        try:
            await cache.fetch(VID, KEY)
        except storage.NotFound as e:
            errors.append(e)

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(read)
    assert len(errors) == 5 and store.calls.count("get") == 1
    assert cache.statistics().entries == 0


async def test_a_cancelled_filler_hands_the_fill_to_a_waiting_reader(tmp_path):
    store = SlowStore(delay=0.2)
    etag = await put(store, KEY, b"z" * 100)
    cache = make_cache(make_ctx(tmp_path, store), tmp_path / "cache")
    got = []

    async def waiter():
        await trio.sleep(0.05)  # starts waiting on the first reader's flight
        got.append(await cache.fetch(VID, KEY))

    async with trio.open_nursery() as n:
        n.start_soon(waiter)
        with trio.move_on_after(0.1):  # the first reader (a client that went away) is cancelled
            await cache.fetch(VID, KEY)
    assert got == [(b"z" * 100, etag)]
    st = cache.statistics()  # two reads began; the cancelled one never finished
    assert (st.storage_reads, st.misses, st.entries) == (2, 1, 1)


def test_without_a_live_ring_the_ring_of_configured_nodes_names_the_owner(tmp_path):
    import ring
    cache = make_cache(make_ctx(tmp_path, storage.MemoryStore(), owner=None), tmp_path / "cache")
    static = ring.Ring({"n1": 1, "n2": 1})
    vids = [layout.new_id(1_700_000_000 + i) for i in range(40)]
    assert [cache.owner_of(v) for v in vids] == [static.owner(v) for v in vids]
    assert {cache.owner_of(v) for v in vids} == {"n1", "n2"}


async def test_a_restarted_cache_starts_empty(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "stale").write_bytes(b"old")
    cache = make_cache(make_ctx(tmp_path, storage.MemoryStore()), tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())
    assert isinstance(cache.statistics(), CacheStatistics)


# ---- a non-owner whose owner does not answer -------------------------------------------------------

async def test_non_owner_falls_back_to_storage_when_the_owner_refuses_connections(tmp_path):
    store = storage.MemoryStore()
    etag = await put(store, KEY, b"q" * 300)
    dead = storage.free_port()  # nothing listens there
    cache = make_cache(make_ctx(tmp_path, store, owner="n2", dead_port=dead), tmp_path / "cache")
    try:
        assert await cache.fetch(VID, KEY) == (b"q" * 300, etag)
    finally:
        await cache.aclose()
    st = cache.statistics()
    assert (st.owner_hops, st.hop_fallbacks, st.storage_reads, st.entries) == (0, 1, 1, 0)


async def test_non_owner_reads_storage_without_trying_an_owner_it_knows_is_dead(tmp_path):
    store = storage.MemoryStore()
    await put(store, KEY, b"q" * 300)
    cache = make_cache(make_ctx(tmp_path, store, owner="n2", alive=("n1",)), tmp_path / "cache")
    with trio.fail_after(0.2):  # far under the hop timeout: no connection was tried
        await cache.fetch(VID, KEY)
    assert cache.statistics().hop_fallbacks == 1


async def test_non_owner_falls_back_when_the_owner_hangs(tmp_path):
    store = storage.MemoryStore()
    await put(store, KEY, b"q" * 300)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]  # accepts, never answers
    port = listener.socket.getsockname()[1]
    cache = make_cache(make_ctx(tmp_path, store, owner="n2", dead_port=port), tmp_path / "cache")
    try:
        start = trio.current_time()
        assert (await cache.fetch(VID, KEY))[0] == b"q" * 300
        assert 0.45 <= trio.current_time() - start < 2.0  # hop_timeout is 0.5 s
    finally:
        await cache.aclose()
        await listener.aclose()
    assert cache.statistics().hop_fallbacks == 1


# ---- a deleted video: evicted here, and the others told (signed) ----------------------------------------

async def test_evict_video_drops_only_that_videos_objects(tmp_path):
    store = storage.MemoryStore()
    other = layout.new_id(1_700_000_123)
    keys = [KEY, layout.out_prefix(VID, 3) + "master.m3u8", layout.out_prefix(other, 1) + "master.m3u8"]
    for k in keys:
        await store.put(k, b"body of " + k.encode())
    cache = make_cache(make_ctx(tmp_path, store))
    for k in keys:
        await cache.fetch_local(k)
    assert cache.statistics().entries == 3
    assert cache.evict_video(VID) == 2
    st = cache.statistics()
    assert st.entries == 1 and st.deleted_evictions == 2 and len(list(cache.dir.iterdir())) == 1
    assert cache.local_file(other, keys[2]) is not None and cache.local_file(VID, KEY) is None


async def test_peers_are_told_to_evict_with_a_signed_notice_and_a_dead_peer_costs_one_timeout(tmp_path):
    from node import peer_auth
    from storage import http1

    heard: list[tuple[str, bytes]] = []

    async def peer(stream):
        buf = http1.HeadBuffer()
        async with stream:
            while (raw := buf.next_head()) is None:
                buf.feed(await stream.receive_some(4096))
            head = http1.parse_request_head(raw)
            while len(buf) < http1.content_length(head.headers):
                buf.feed(await stream.receive_some(4096))
            peer_auth.verify(b"key", head.headers.get("x-shoal-hop"), head.method, head.target, time.time())
            heard.append((head.target, buf.data))
            await stream.send_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    async with trio.open_nursery() as n:
        listeners = await n.start(functools.partial(trio.serve_tcp, peer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        ctx = make_ctx(tmp_path, storage.MemoryStore())
        nodes = (NodeSpec("n1", "127.0.0.1", 1, 2), NodeSpec("n2", "127.0.0.1", port, 4),
                 NodeSpec("n3", "127.0.0.1", storage.free_port(), 6))  # n3: nothing listens
        ctx.cfg = replace(ctx.cfg, nodes=nodes)
        ctx.cluster_key = b"key"
        ctx.peers = None  # before gossip runs: every configured node
        cache = make_cache(ctx)
        with trio.fail_after(ctx.cfg.cache.hop_timeout + 2):
            await cache.tell_peers_evict(VID)
        await cache.aclose()
        n.cancel_scope.cancel()
    assert heard == [("/v1/internal/evict", f'{{"video": "{VID}"}}'.encode())]
