"""The access log and request metrics (node.http.edge) on both HTTP paths.

The node's real HTTP stack in-process (hypercorn + the app + the fast lane, over the in-memory
store, on 127.0.0.1): given a sequence of requests on one kept-alive connection, some answered
by the lane and some by hypercorn, then each request writes exactly one ``http_request`` line
with its method, route class, status, body bytes and time, and one latency observation under the
same route class; with ``access_log: false`` the lines go and the metrics stay.
"""

from __future__ import annotations

import functools
import io
import json
import sys
from msgspec.structs import replace

import httpx
import hypercorn.config
import hypercorn.trio
import trio

import storage
from node import log
from node.config import CacheConfig, Config, NodeSpec
from node.context import NodeContext
from node.http import patches
from node.http.app import create_app
from node.http.fastlane import FastLane
from node.play.segcache import SegmentCache
from node.process.worker import Worker
from node.records import layout
from node.records import lifecycle as lc
from node.records.store import VideoStore
from storage.cas import encode

VID = layout.new_id(1_700_000_000)
SEG = f"/v1/videos/{VID}/hls/360p/seg_00001.ts"
BODY = bytes(range(256)) * 400  # 102,400 bytes
UPLOAD = b"u" * 3000


def make_ctx(tmp_path, store, *, access_log: bool = True) -> NodeContext:
    cfg = replace(Config(nodes=(NodeSpec("n1", "127.0.0.1", 1, 2),)), cache=CacheConfig(max_bytes=64 << 20),
                  access_log=access_log)
    videos = VideoStore(store, "n1")
    ctx = NodeContext(cfg=cfg, node_id="n1", store=store, videos=videos,
                      worker=Worker(videos, cfg, "n1", tmp_path), data_dir=tmp_path, token="t0k")
    ctx.cache = SegmentCache(ctx, tmp_path / "cache")
    return ctx


async def ready_video(store) -> None:
    rec = lc.new_record(VID, "n1", 0.0, state=lc.UPLOADED, filename="a.mp4", size=10)
    rec = lc.commit_ready(lc.claim(rec, "n1", 1.0, 60.0, max_attempts=3), "n1", 1, 2.0, [])
    await store.put(layout.record_key(VID), encode(rec))
    await store.put(layout.out_prefix(VID, 1) + "360p/seg_00001.ts", BODY)


async def serve(nursery, ctx) -> tuple[str, FastLane]:
    app = create_app(ctx)
    hc = hypercorn.config.Config()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = hc.errorlog = None
    lane = FastLane(ctx)
    with patches.serving(lane):
        binds = await nursery.start(functools.partial(hypercorn.trio.serve, app, hc))
    return binds[0], lane


# (method, path, headers, body) -> (route class, status, bytes in, bytes out), in order, on one connection
REQUESTS = [
    (("GET", SEG, {}, None), ("playback_miss", 200, 0, len(BODY))),  # the lane: the owner reads storage
    (("GET", SEG, {}, None), ("playback_hit", 200, 0, len(BODY))),  # the lane: from the cache file
    (("HEAD", SEG, {}, None), ("playback_hit", 200, 0, 0)),
    (("GET", SEG, {"Range": "bytes=0-99"}, None), ("playback_hit", 206, 0, 100)),
    (("GET", f"/v1/internal/objects/{VID}/out/1/360p/seg_00001.ts", {}, None), ("internal_hop", 200, 0, len(BODY))),
    (("GET", f"/v1/videos/{VID}/hls/360p/seg_00002.ts", {}, None), ("playback_miss", 404, 0, None)),
    # a request with a body: hypercorn from here on (the connection is handed over)
    (("POST", "/v1/videos", {"Authorization": "Bearer t0k", "X-Filename": "a.mp4"}, UPLOAD),
     ("upload_one_shot", 201, len(UPLOAD), None)),
    (("GET", SEG, {}, None), ("playback_hit", 200, 0, len(BODY))),  # the app's playback route
    (("GET", "/healthz", {}, None), ("ops", 200, 0, None)),
    (("GET", "/v1/nothing", {}, None), ("api", 404, 0, None)),
]


async def run_requests(base: str) -> list[httpx.Response]:
    out = []
    async with httpx.AsyncClient(base_url=base) as client:  # one kept-alive connection
        for (method, path, headers, body), _ in REQUESTS:
            out.append(await client.request(method, path, headers=headers, content=body))
    return out


def access_lines(buf: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line["event"] == "http_request"]


async def test_each_request_on_either_path_writes_one_access_line_and_one_observation(tmp_path):
    # given a node serving with the fast lane in front, its log captured
    store = storage.MemoryStore()
    await ready_video(store)
    ctx = make_ctx(tmp_path, store)
    buf = io.StringIO()
    log.configure("n1", buf)
    try:
        async with trio.open_nursery() as n:
            base, lane = await serve(n, ctx)
            # when the requests are made on one connection
            answers = await run_requests(base)
            n.cancel_scope.cancel()
    finally:
        log.configure("-", sys.stderr)
    assert [r.status_code for r in answers] == [want[1] for _, want in REQUESTS]
    assert lane.answered == 6 and lane.handed_over == 1  # both paths were taken
    # then there is exactly one line per request, in order, with the request's facts
    lines = access_lines(buf)
    assert len(lines) == len(REQUESTS), lines
    for line, ((method, path, _, _), (route, status, bytes_in, bytes_out)), answer in zip(lines, REQUESTS, answers):
        assert line["node"] == "n1" and line["level"] == "info"
        assert (line["method"], line["route"], line["status"], line["bytes_in"]) == \
            (method, route, status, bytes_in), (path, line)
        expected_out = len(answer.content) if bytes_out is None else bytes_out
        assert line["bytes_out"] == expected_out, (path, line)
        assert isinstance(line["ms"], float) and 0 <= line["ms"] < 10_000
    # and the metrics counted the same requests under the same classes
    reg = ctx.metrics.registry
    for route, status, count in [("playback_hit", "2xx", 4), ("playback_miss", "2xx", 1),
                                 ("playback_miss", "4xx", 1), ("internal_hop", "2xx", 1),
                                 ("upload_one_shot", "2xx", 1), ("ops", "2xx", 1), ("api", "4xx", 1)]:
        assert reg.get_sample_value("shoal_http_request_duration_seconds_count",
                                    {"route": route, "status": status}) == count, (route, status)
    assert reg.get_sample_value("shoal_http_received_bytes_total", {"route": "upload_one_shot"}) == len(UPLOAD)
    assert reg.get_sample_value("shoal_http_sent_bytes_total", {"route": "playback_hit"}) == 2 * len(BODY) + 100


async def test_access_log_off_keeps_the_metrics(tmp_path):
    store = storage.MemoryStore()
    await ready_video(store)
    ctx = make_ctx(tmp_path, store, access_log=False)
    buf = io.StringIO()
    log.configure("n1", buf)
    try:
        async with trio.open_nursery() as n:
            base, _ = await serve(n, ctx)
            await run_requests(base)
            n.cancel_scope.cancel()
    finally:
        log.configure("-", sys.stderr)
    assert access_lines(buf) == []
    total = sum(s.value for fam in ctx.metrics.registry.collect() if fam.name == "shoal_http_request_duration_seconds"
                for s in fam.samples if s.name.endswith("_count"))
    assert total == len(REQUESTS)
