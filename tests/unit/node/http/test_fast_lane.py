"""The fast lane (node.http.fastlane) and the hop client (storage.http1.Http1Client).

Pure parts by table; then the node's real HTTP stack in-process (hypercorn + the app over the
in-memory store, on 127.0.0.1): every answer the lane gives is the one the full path gives,
header by header, and what the lane does not answer reaches hypercorn intact, also later on the
same connection.  Real processes and the real S3 server are in test_playback.py.
"""

from __future__ import annotations

import functools
import json
import time
from msgspec.structs import replace

import httpx
import hypercorn.config
import hypercorn.trio
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import pytest
import trio

import storage
from node.records import layout
from node.records import lifecycle as lc
from node import peer_auth
from node.http import patches
from node.http.app import create_app
from node.config import CacheConfig, Config, NodeSpec
from node.context import NodeContext
from node.http.fastlane import FastLane, Head, encode_head, parse_head, plan, route
from storage.http1 import ClientError, Http1Client
from storage import http1
from node.play.segcache import SegmentCache
from node.records.store import VideoStore
from node.process.worker import Worker
from storage.cas import encode

VID = layout.new_id(1_700_000_000)
SEG = f"/v1/videos/{VID}/hls/360p/seg_00001.ts"


# ---- pure: request heads ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expect", [
    (b"GET /a HTTP/1.1\r\nHost: x", Head("GET", "/a", {"host": "x"})),
    (b"HEAD /a HTTP/1.1\r\nRange: bytes=0-1\r\nRANGE: bytes=4-5",
     Head("HEAD", "/a", {"range": "bytes=0-1, bytes=4-5"})),  # repeated fields join: several ranges
    (b"GET /a HTTP/1.1\r\nContent-Length: 0", Head("GET", "/a", {"content-length": "0"})),
    (b"GET /a HTTP/1.0\r\nHost: x", None),  # HTTP/1.0: hypercorn
    (b"POST /a HTTP/1.1\r\nHost: x", None),
    (b"GET /a HTTP/1.1\r\nContent-Length: 5", None),  # a body
    (b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked", None),
    (b"GET /a HTTP/1.1\r\nExpect: 100-continue", None),
    (b"GET /a HTTP/1.1\r\nHost: x\r\n folded", None),
    (b"GET /a HTTP/1.1\r\nHost x", None),
    (b"GET /a HTTP/1.1\r\nHost : x", None),  # whitespace before the colon (RFC 9112: reject)
    (b"GET  /a HTTP/1.1", None),
])
def test_parse_head(raw, expect):
    assert parse_head(raw) == expect


def test_keep_alive_follows_connection_close():
    assert parse_head(b"GET /a HTTP/1.1\r\nHost: x").keep_alive
    assert not parse_head(b"GET /a HTTP/1.1\r\nConnection: Close").keep_alive


@pytest.mark.parametrize("target,expect", [
    (SEG, ("playback", VID, "360p/seg_00001.ts")),
    (f"/v1/videos/{VID}/hls/master.m3u8", ("playback", VID, "master.m3u8")),
    (f"/v1/videos/{VID}/hls/../record.json", None),
    (f"/v1/videos/{VID}/hls/360p/seg_00001.ts?x=1", None),  # a query: the full path decides
    ("/v1/videos/not-an-id/hls/master.m3u8", None),
    (f"/v1/internal/objects/{VID}/out/3/360p/seg_00001.ts", ("internal", VID, "out/3/360p/seg_00001.ts")),
    (f"/v1/internal/objects/{VID}/record.json", None),  # only committed HLS outputs
    (f"/v1/internal/objects/{VID}/out/x/master.m3u8", None),
    (f"/v1/videos/{VID}/poster.jpg", ("playback", VID, "poster.jpg")),
    (f"/v1/videos/{VID}/hls/poster.jpg", None),  # the poster is not an HLS path
    ("/v1/videos/not-an-id/poster.jpg", None),
    (f"/v1/internal/objects/{VID}/out/3/poster.jpg", ("internal", VID, "out/3/poster.jpg")),
    (f"/v1/internal/objects/{VID}/chunks/00000/2/poster.jpg", ("internal", VID, "chunks/00000/2/poster.jpg")),
    (f"/v1/videos/{VID}", None),
    ("/", None),
])
def test_route(target, expect):
    assert route(target) == expect


# ---- pure: the answer -----------------------------------------------------------------------------------

def _plan(headers=None, method="GET", kind="playback", size=1000, path="360p/seg_00001.ts"):
    return plan(Head(method, "/x", headers or {}), kind=kind, size=size, etag='"e1"', path=path,
                node_id="n1", date="D")


@pytest.mark.parametrize("headers,method,status,start,length,extra", [
    ({}, "GET", 200, 0, 1000, {"Content-Length": "1000"}),
    ({}, "HEAD", 200, 0, 0, {"Content-Length": "1000"}),  # what a GET would send, no body
    ({"range": "bytes=0-99"}, "GET", 206, 0, 100, {"Content-Range": "bytes 0-99/1000", "Content-Length": "100"}),
    ({"range": "bytes=-10"}, "GET", 206, 990, 10, {"Content-Range": "bytes 990-999/1000"}),
    ({"range": "bytes=900-"}, "GET", 206, 900, 100, {"Content-Range": "bytes 900-999/1000"}),
    ({"range": "bytes=0-1, 5-6"}, "GET", 200, 0, 1000, {"Content-Length": "1000"}),  # several: whole
    ({"range": "bytes=5-2000"}, "GET", 206, 5, 995, {"Content-Range": "bytes 5-999/1000"}),
    ({"if-none-match": '"e1"'}, "GET", 304, 0, 0, {}),
    ({"if-none-match": '"x", "e1"'}, "GET", 304, 0, 0, {}),
    ({"if-none-match": "*"}, "GET", 304, 0, 0, {}),
    ({"if-none-match": '"other"'}, "GET", 200, 0, 1000, {}),
])
def test_plan(headers, method, status, start, length, extra):
    p = _plan(headers, method)
    h = dict(p.headers)
    assert (p.status, p.start, p.length) == (status, start, length)
    assert h["ETag"] == '"e1"' and h["Access-Control-Allow-Origin"] == "*" and h["X-Served-By"] == "n1"
    assert h["Content-Type"] == "video/mp2t" and "immutable" in h["Cache-Control"]
    for k, v in extra.items():
        assert h[k] == v
    if status == 304:
        assert h["Content-Length"] == "0"  # as the full path (Quart) says


def test_plan_leaves_416_to_the_full_path_and_knows_playlists_and_hops():
    assert _plan({"range": "bytes=1000-"}) is None
    assert _plan({"range": "bytes=-0"}) is None
    pl = dict(_plan(path="360p/index.m3u8").headers)
    assert pl["Content-Type"] == "application/vnd.apple.mpegurl" and pl["Cache-Control"] == "public, max-age=5"
    poster = dict(_plan(path="poster.jpg").headers)
    assert poster["Content-Type"] == "image/jpeg" and "immutable" in poster["Cache-Control"]
    hop = _plan({"range": "bytes=0-1"}, kind="internal")
    assert hop.status == 200 and hop.length == 1000
    assert dict(hop.headers)["Content-Type"] == "application/octet-stream"


def test_encode_head():
    p = _plan()
    assert encode_head(p, True).startswith(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n")
    assert encode_head(p, True).endswith(b"\r\nDate: D\r\n\r\n")
    assert b"\r\nConnection: close\r\n" in encode_head(p, False)


def test_parse_response_head():
    head = http1.parse_response_head(b"HTTP/1.1 200 OK\r\nETag: x\r\nContent-Length: 3")
    assert (head.status, head.headers) == (200, {"etag": "x", "content-length": "3"})
    for bad in (b"HTTP/2 200", b"FTP 200 OK", b"HTTP/1.1 abc", b"HTTP/1.1 200 OK\r\nno colon"):
        with pytest.raises(http1.ProtocolError):
            http1.parse_response_head(bad)


# ---- the node's HTTP stack in-process --------------------------------------------------------------------

def make_ctx(tmp_path, store) -> NodeContext:
    nodes = (NodeSpec("n1", "127.0.0.1", 1, 2),)
    cfg = replace(Config(nodes=nodes), cache=CacheConfig(max_bytes=64 << 20))
    videos = VideoStore(store, "n1")
    ctx = NodeContext(cfg=cfg, node_id="n1", store=store, videos=videos,
                      worker=Worker(videos, cfg, "n1", tmp_path), data_dir=tmp_path, token="t0k")
    ctx.cache = SegmentCache(ctx, tmp_path / "cache")
    return ctx


async def ready_video(store, body: bytes) -> None:
    rec = lc.new_record(VID, "n1", 0.0, state=lc.UPLOADED, filename="a.mp4", size=10)
    rec = lc.commit_ready(lc.claim(rec, "n1", 1.0, 60.0, max_attempts=3), "n1", 1, 2.0, [])
    await store.put(layout.record_key(VID), encode(rec))
    await store.put(layout.out_prefix(VID, 1) + "360p/seg_00001.ts", body)
    await store.put(layout.out_prefix(VID, 1) + "master.m3u8", b"#EXTM3U\n")


async def serve(nursery, ctx, *, lane: bool, read_timeout: float = 120.0) -> tuple[str, FastLane | None]:
    """hypercorn serving the app on a free port, with or without the lane in front."""
    app = create_app(ctx)
    ctx.nursery = nursery
    hc = hypercorn.config.Config()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = hc.errorlog = None
    fast = FastLane(ctx, read_timeout=read_timeout) if lane else None
    with patches.serving(fast):  # as node.main serves; TCPServer is read once, when serving starts
        binds = await nursery.start(functools.partial(hypercorn.trio.serve, app, hc))
    return binds[0], fast


BROKEN = f"/v1/videos/{VID}/hls/360p/seg_00009.ts"  # storage cannot be reached for it
REQUESTS = [
    ("GET", SEG, {}),
    ("GET", SEG, {}),  # the second: a hit
    ("HEAD", SEG, {}),
    ("GET", SEG, {"Range": "bytes=0-99"}),
    ("GET", SEG, {"Range": "bytes=-100"}),
    ("GET", SEG, {"Range": "bytes=100-"}),
    ("GET", SEG, {"Range": "bytes=0-1,5-6"}),
    ("GET", SEG, {"If-None-Match": "ETAG"}),
    ("GET", f"/v1/videos/{VID}/hls/master.m3u8", {}),
    ("GET", f"/v1/videos/{VID}/hls/360p/seg_00002.ts", {}),  # 404: storage has no such object
    ("HEAD", f"/v1/videos/{VID}/hls/360p/seg_00002.ts", {}),
    ("GET", BROKEN, {}),  # 503 storage_unavailable, Retry-After
    ("GET", f"/v1/internal/objects/{VID}/out/1/360p/seg_00001.ts", {}),
    ("GET", f"/v1/internal/objects/{VID}/out/1/360p/seg_00002.ts", {}),
    ("GET", SEG, {"Range": "bytes=2000000-"}),  # 416: hypercorn's, on the same connection
    ("GET", f"/v1/videos/{layout.new_id(1_700_000_001)}/hls/master.m3u8", {}),  # unknown video
    ("GET", SEG, {}),  # after hypercorn took the connection
]


class Unreachable(storage.MemoryStore):
    async def get(self, key: str) -> tuple[bytes, str]:
        if key.endswith("seg_00009.ts"):
            raise storage.StorageUnavailable(f"get {key}: connection refused")
        return await super().get(key)


async def _answers(base: str, etag: str) -> list[tuple[int, dict, bytes]]:
    out = []
    async with httpx.AsyncClient(base_url=base) as client:  # one kept-alive connection
        for method, path, headers in REQUESTS:
            headers = {k: v.replace("ETAG", etag) for k, v in headers.items()}
            r = await client.request(method, path, headers=headers)
            h = {k: v for k, v in r.headers.items() if k not in ("date", "server")}
            out.append((r.status_code, h, r.content))
    return out


async def test_the_lane_answers_exactly_as_the_full_path_does(tmp_path):
    body = bytes(range(256)) * 4000  # 1 MB: several sendfile rounds
    store = Unreachable()
    await ready_video(store, body)
    etag = (await store.get(layout.out_prefix(VID, 1) + "360p/seg_00001.ts"))[1]
    async with trio.open_nursery() as n:
        slow_ctx, fast_ctx = make_ctx(tmp_path / "a", store), make_ctx(tmp_path / "b", store)
        slow_url, _ = await serve(n, slow_ctx, lane=False)
        fast_url, lane = await serve(n, fast_ctx, lane=True)
        slow = await _answers(slow_url, etag)
        fast = await _answers(fast_url, etag)
        n.cancel_scope.cancel()
    assert [s for s, _, _ in slow] == [200, 200, 200, 206, 206, 206, 200, 304, 200, 404, 404, 503, 200, 404,
                                       416, 404, 200]
    assert slow[11][1]["retry-after"] == "2" and b"storage_unavailable" in slow[11][2]
    for (method, path, headers), a, b in zip(REQUESTS, slow, fast):
        assert a == b, f"{method} {path} {headers}"
    assert fast[0][2] == body and fast[3][2] == body[:100] and fast[4][2] == body[-100:]
    # the lane answered all up to the 416 (a miss, 404s and a 503 too); from there on the
    # connection was hypercorn's
    fast_counts, slow_counts = fast_ctx.metrics.events.values(), slow_ctx.metrics.events.values()
    assert fast_counts["fast_lane_responses"] == 14
    assert lane.answered == 14 and lane.handed_over == 1
    assert fast_counts["storage_unavailable_responses"] == 1
    assert slow_counts["fast_lane_responses"] == 0


async def test_the_lane_hands_over_requests_with_a_body_and_pipelined_requests_are_answered_in_order(tmp_path):
    store = storage.MemoryStore()
    await ready_video(store, b"x" * 5000)
    async with trio.open_nursery() as n:
        ctx = make_ctx(tmp_path, store)
        url, lane = await serve(n, ctx, lane=True)
        host, port = url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        # two pipelined GETs in one write, then a POST with a body: all answered, in order
        two = f"GET {SEG} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 2
        post = (b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                b"Authorization: Bearer wrong\r\n\r\nabc")
        await stream.send_all(two + post)
        got = b""
        with trio.fail_after(10):
            while not got.endswith(b"}}\n"):  # the 403's JSON body ends the stream of answers
                got += await stream.receive_some(1 << 16)
        await stream.aclose()
        n.cancel_scope.cancel()
    assert got.count(b"HTTP/1.1 200 OK\r\n") == 2 and got.count(b"x" * 5000) == 2
    assert b"HTTP/1.1 403 " in got and got.index(b"HTTP/1.1 403 ") > got.rindex(b"x" * 5000)
    assert lane.answered == 2 and lane.handed_over == 1


async def test_a_client_that_stops_reading_is_dropped_after_read_timeout(tmp_path):
    store = storage.MemoryStore()
    await ready_video(store, b"y" * (48 << 20))  # more than loopback's socket buffers hold
    async with trio.open_nursery() as n:
        ctx = make_ctx(tmp_path, store)
        url, lane = await serve(n, ctx, lane=True, read_timeout=1.0)
        # fill the cache directly (an HTTP read here could itself stall past 1 s on a loaded
        # machine and be dropped): the request below is a hit, answered by the lane
        body, _ = await ctx.cache.fetch_local(layout.out_prefix(VID, 1) + "360p/seg_00001.ts")
        assert len(body) == 48 << 20
        host, port = url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(f"GET {SEG} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await trio.sleep(2.5)  # read nothing: the lane gives up on this answer after 1 s
        got = 0
        with trio.fail_after(10):
            while chunk := await stream.receive_some(1 << 20):
                got += len(chunk)
        await stream.aclose()
        n.cancel_scope.cancel()
    assert 0 < got < 48 << 20  # what the socket buffers held, then the connection was closed
    assert lane.answered == 0  # the answer was cut off, never completed


# ---- the hop client ---------------------------------------------------------------------------------------

async def _tiny_server(nursery, answers: list[bytes], accepted: list[int]) -> str:
    """Answers each request with the next of ``answers`` (raw bytes); b"" closes the connection."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def handle(stream):
        accepted.append(1)
        buf = b""
        async with stream:
            while answers:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(4096)
                    if not data:
                        return
                    buf += data
                buf = buf.split(b"\r\n\r\n", 1)[1]
                answer = answers.pop(0)
                if not answer:
                    return
                await stream.send_all(answer)

    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return f"127.0.0.1:{port}"


async def test_hop_client_reuses_connections_and_recovers_from_a_closed_one():
    ok = b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 5\r\n\r\nhello"
    accepted: list[int] = []
    async with trio.open_nursery() as n:
        addr = await _tiny_server(n, [ok, ok, b"", ok], accepted)
        client = Http1Client()
        for _ in range(3):  # the third finds its kept connection closed and retries on a new one
            a = await client.get(addr, "/x", {"X-Shoal-Hop": "n2"})
            assert (a.status, a.headers["etag"], a.body) == (200, '"e"', b"hello")
        await client.aclose()
        n.cancel_scope.cancel()
    assert len(accepted) == 2


@pytest.mark.parametrize("answer,why", [
    (b"HTTP/1.1 200 OK\r\nETag: e\r\n\r\nhello", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "ended after 5 of 50"),
    (b"garbage\r\n\r\n", "malformed status line"),
    (b"", "closed before the answer"),
])
async def test_hop_client_errors(answer, why):
    async with trio.open_nursery() as n:
        addr = await _tiny_server(n, [answer], [])
        client = Http1Client()
        with pytest.raises(ClientError, match=why):
            with trio.fail_after(5):
                await client.get(addr, "/x", {})
        await client.aclose()
        n.cancel_scope.cancel()


async def test_hop_client_refused_is_a_hop_error():
    port = storage.free_port()
    with pytest.raises(ClientError):
        await Http1Client().get(f"127.0.0.1:{port}", "/x", {})


# ---- parsing edges and the owner hop: both paths answer alike (docs/security.md) ------------------------

HUGE = "9" * 5000


async def _both(tmp_path, store, requests, *, key: bytes | None = None, warm: list[str] = ()):
    """Each request's (status, headers, body) from the full path and from the lane (one
    connection each), after ``warm`` paths were fetched (filling the lane node's cache)."""
    out = []
    async with trio.open_nursery() as n:
        for name, lane in (("slow", False), ("fast", True)):
            ctx = make_ctx(tmp_path / name, store)
            ctx.cluster_key = key
            url, _ = await serve(n, ctx, lane=lane)
            async with httpx.AsyncClient(base_url=url) as client:
                for path in warm:
                    assert (await client.get(path)).status_code == 200
                got = []
                for method, path, headers in requests:
                    with trio.fail_after(10):
                        r = await client.request(method, path, headers=headers)
                    got.append((r.status_code, {k: v for k, v in r.headers.items() if k not in ("date", "server")},
                                r.content))
                out.append(got)
        n.cancel_scope.cancel()
    return out


async def test_a_range_with_a_5000_digit_number_gets_the_same_clean_answer_from_both_paths(tmp_path):
    store = storage.MemoryStore()
    await ready_video(store, b"z" * 1000)
    requests = [("GET", SEG, {"Range": f"bytes={HUGE}-"}), ("GET", SEG, {"Range": f"bytes=0-{HUGE}"}),
                ("GET", SEG, {"Range": f"bytes=-{HUGE}"}), ("GET", SEG, {})]
    slow, fast = await _both(tmp_path, store, requests, warm=[SEG])
    assert slow == fast
    (s416, h416, b416), (s1, h1, b1), (s2, h2, b2), (s3, _, _) = slow
    assert s416 == 416 and h416["content-range"] == "bytes */1000" and b"bad_range" in b416
    assert (s1, h1["content-range"], b1) == (206, "bytes 0-999/1000", b"z" * 1000)
    assert (s2, h2["content-range"], b2) == (206, "bytes 0-999/1000", b"z" * 1000)
    assert s3 == 200  # and the connection is still good afterwards


async def test_a_head_with_a_bare_lf_is_framed_alike_by_both_paths(tmp_path):
    """h11 ends lines (and heads) at a bare LF; the lane hands such a head to hypercorn untouched,
    so both read two requests from these bytes."""
    store = storage.MemoryStore()
    await ready_video(store, b"w" * 3000)
    wire = (f"GET {SEG} HTTP/1.1\r\nHost: x\n\n"
            f"GET {SEG} HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n").encode()
    answers = {}
    async with trio.open_nursery() as n:
        for name, lane in (("slow", False), ("fast", True)):
            ctx = make_ctx(tmp_path / name, store)
            url, fast = await serve(n, ctx, lane=lane)
            host, port = url.removeprefix("http://").split(":")
            async with httpx.AsyncClient(base_url=url) as client:  # a cache hit for the lane
                assert (await client.get(SEG)).status_code == 200
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(wire)
            got = b""
            with trio.fail_after(10):  # two whole answers (a lane that frames one request waits here)
                while got.count(b"w" * 3000) < 2:
                    got += await stream.receive_some(1 << 16)
            with trio.move_on_after(0.3):  # and nothing more
                while chunk := await stream.receive_some(1 << 16):
                    got += chunk
            await stream.aclose()
            answers[name] = got.count(b"HTTP/1.1 200 "), got.count(b"w" * 3000)
            if fast is not None:
                assert fast.handed_over == 1
        n.cancel_scope.cancel()
    assert answers["slow"] == answers["fast"] == (2, 2)


KEY = b"cluster-key-for-tests"
INTERNAL = f"/v1/internal/objects/{VID}/out/1/360p/seg_00001.ts"


def _proof(method: str, path: str, key: bytes = KEY, now: float | None = None) -> dict[str, str]:
    return {"X-Shoal-Hop": peer_auth.sign(key, method, path, time.time() if now is None else now)}


async def test_internal_requests_need_the_cluster_key_and_the_ready_epoch_on_both_paths(tmp_path):
    store = storage.MemoryStore()
    await ready_video(store, b"v" * 2000)
    await store.put(layout.out_prefix(VID, 2) + "360p/seg_00001.ts", b"uncommitted")  # epoch 2: not ready
    stale = f"/v1/internal/objects/{VID}/out/2/360p/seg_00001.ts"
    requests = [
        ("GET", INTERNAL, {}),  # anonymous: 401
        ("GET", INTERNAL, _proof("GET", INTERNAL, b"another key")),  # 403
        ("GET", INTERNAL, _proof("GET", INTERNAL, now=time.time() - 600)),  # too old: 403
        ("GET", INTERNAL, {"X-Shoal-Hop": "n2"}),  # the old header (a node id): 403
        ("GET", INTERNAL, _proof("GET", INTERNAL)),  # 200
        ("GET", stale, _proof("GET", stale)),  # not the ready epoch: 404
        ("GET", INTERNAL, {}),  # anonymous again, the object cached now: still 401
    ]
    slow, fast = await _both(tmp_path, store, requests, key=KEY, warm=[SEG])
    assert [(s, b) for s, _, b in slow] == [(s, b) for s, _, b in fast]
    statuses = [s for s, _, _ in slow]
    assert statuses == [401, 403, 403, 403, 200, 404, 401]
    codes = [b and json.loads(b)["error"]["code"] for s, _, b in slow if s != 200]
    assert codes == ["unauthorized", "forbidden", "forbidden", "forbidden", "not_found", "unauthorized"]
    assert slow[4][2] == b"v" * 2000


async def test_a_cluster_without_a_key_keeps_unauthenticated_hops(tmp_path):
    store = storage.MemoryStore()
    await ready_video(store, b"u" * 100)
    slow, fast = await _both(tmp_path, store, [("GET", INTERNAL, {})], key=None)
    assert slow[0][0] == fast[0][0] == 200 and slow[0][2] == fast[0][2] == b"u" * 100


async def test_a_deleted_video_is_not_served_from_the_cache_of_either_path(tmp_path):
    """The ready record is asked (through the 1 s memo) before any cache hit, so a node that
    never heard of the DELETE stops serving within the memo's second."""
    store = storage.MemoryStore()
    await ready_video(store, b"t" * 500)
    async with trio.open_nursery() as n:
        urls = {}
        for name, lane in (("slow", False), ("fast", True)):
            ctx = make_ctx(tmp_path / name, store)
            urls[name], _ = await serve(n, ctx, lane=lane)
            async with httpx.AsyncClient(base_url=urls[name]) as client:
                assert (await client.get(SEG)).status_code == 200  # cached now
                assert (await client.get(INTERNAL)).status_code == 200
        # another node deletes it (only the record changes here: the cached copies stay)
        deleter = VideoStore(store, "n2")
        await deleter.change(VID, lambda r: lc.delete(r, "n2", 5.0))
        await trio.sleep(1.1)  # the memo's second
        for name, url in urls.items():
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get(SEG)).status_code == 404, name
                assert (await client.get(INTERNAL)).status_code == 404, name
                assert (await client.get(f"/v1/videos/{VID}/hls/master.m3u8")).status_code == 404, name
        n.cancel_scope.cancel()
