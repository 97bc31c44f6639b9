"""Issue 6 end to end: playback from every node through the owner's cache, on real node
processes, the real S3 server (SeaweedFS) and real ffmpeg.

Given a 3-node cluster with two ready videos, then: ffmpeg plays the HLS from each node and every
segment's bytes and ETag are the same from every node and equal to storage's; 50 concurrent
readers of a cold segment cause one storage read; Range requests behave as documented
(docs/streaming.md); and when the owner is killed during playback the rest still arrives.
"""

from __future__ import annotations

import subprocess
import time

import httpx
import m3u8
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from conftest import TEST_LADDER
from harness import Cluster, cluster_with_ready_videos, owner_of
from node import peer_auth
from node.records import layout
from node.process import ffmpeg_exe

pytestmark = pytest.mark.cluster


# ---- fixtures and helpers ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    """One cluster for the module, with videos "a" (played everywhere) and "b" (left cold)."""
    yield from cluster_with_ready_videos(tmp_path_factory.mktemp("streaming"), ("a", "b"), seconds=10,
                                         overrides={"ladder": TEST_LADDER})


def cache_stats(c: Cluster, node: str) -> dict:
    return httpx.get(c.url(node) + "/v1/node").json()["cache"]


def s3_client(c: Cluster):
    import boto3
    return boto3.client("s3", endpoint_url=c.s3_endpoint, aws_access_key_id=c.access_key,
                        aws_secret_access_key=c.secret_key, region_name="us-east-1")


def segment_paths(c: Cluster, vid: str) -> list[str]:
    """Every media playlist and segment path under .../hls/, read from node n1."""
    base = c.url("n1") + f"/v1/videos/{vid}/hls/"
    master = m3u8.loads(httpx.get(base + "master.m3u8").text)
    out = []
    for pl in master.playlists:
        folder = pl.uri.rsplit("/", 1)[0]
        out.append(pl.uri)
        out += [f"{folder}/{s.uri}" for s in m3u8.loads(httpx.get(base + pl.uri).text).segments]
    return out


def hls_url(c: Cluster, node: str, vid: str, path: str = "master.m3u8") -> str:
    return c.url(node) + f"/v1/videos/{vid}/hls/{path}"


def ffmpeg_play(url: str, *, realtime: bool = False, timeout: float = 120) -> subprocess.Popen:
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error"]
    if realtime:
        args.append("-re")
    return subprocess.Popen(args + ["-i", url, "-map", "0", "-f", "null", "-"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# ---- tests ---------------------------------------------------------------------------------------------

def test_ffmpeg_plays_from_every_node_and_every_segment_is_the_same_everywhere(cl):
    vid = cl.videos["a"]
    owner = owner_of(cl, vid)
    # when ffmpeg plays the stream from each node
    for node in cl.node_ids:
        p = ffmpeg_play(hls_url(cl, node, vid))
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"ffmpeg from {node}: {err[-2000:]}"
    # then every playlist and segment has the same bytes and ETag from every node, equal to storage's
    s3 = s3_client(cl)
    epoch = httpx.get(cl.url("n1") + f"/v1/videos/{vid}").json().get("ready_epoch")
    paths = segment_paths(cl, vid)
    assert sum(p.endswith(".ts") for p in paths) >= 3 * 5  # 3 renditions of 10 s in 2 s segments
    for path in paths:
        answers = {}
        for node in cl.node_ids:
            r = httpx.get(hls_url(cl, node, vid, path))
            assert r.status_code == 200 and r.headers["x-served-by"] == node
            answers[node] = (r.content, r.headers["etag"])
        assert len(set(answers.values())) == 1, f"{path} differs across nodes"
        body, etag = answers["n1"]
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=cl.bucket, Prefix=layout.out_prefix(vid))["Contents"]
                if o["Key"].endswith("/" + path)]
        assert len(keys) == 1, keys  # only the committed epoch's outputs exist
        if epoch is not None:
            assert keys[0] == layout.out_prefix(vid, epoch) + path
        obj = s3.get_object(Bucket=cl.bucket, Key=keys[0])
        assert (obj["Body"].read(), obj["ETag"]) == (body, etag)
    # and the owner's cache served it: the others hopped to it and cached nothing themselves
    for node in cl.node_ids:
        st = cache_stats(cl, node)
        if node == owner:
            assert st["entries"] >= len(paths) and st["peer_requests"] > 0 and st["hits"] > 0
        else:
            assert st["entries"] == 0 and st["owner_hops"] >= len(paths) and st["hop_fallbacks"] == 0


def test_cache_statistics_are_prometheus_metrics(cl):
    for node in cl.node_ids:
        r = httpx.get(cl.url(node) + "/metrics")
        assert r.status_code == 200, r.text
        families = {f.name: f for f in text_string_to_metric_families(r.text)}
        st = cache_stats(cl, node)
        for field in ("hits", "misses", "owner_hops", "hop_fallbacks", "storage_reads", "evictions",
                      "coalesced", "peer_requests"):
            fam = families[f"shoal_cache_{field}"]  # the parser names a counter without its _total
            assert fam.type == "counter" and fam.samples[0].value >= 0
        assert families["shoal_cache_bytes"].type == families["shoal_cache_max_bytes"].type == "gauge"
        assert families["shoal_cache_entries"].samples[0].value == st["entries"]
        assert families["shoal_cache_max_bytes"].samples[0].value == st["max_bytes"]


async def test_fifty_concurrent_readers_of_a_cold_segment_cause_one_storage_read(cl):
    vid = cl.videos["b"]  # nobody has read b's segments yet
    owner = owner_of(cl, vid)
    path = "180p/seg_00002.ts"
    before = {n: cache_stats(cl, n) for n in cl.node_ids}
    bodies: list[tuple[str, bytes, str]] = []

    # when 50 readers ask at once, spread over all three nodes (the non-owners hop to the owner)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        async def read(i: int) -> None:
            node = cl.node_ids[i % 3]
            r = await client.get(hls_url(cl, node, vid, path))
            assert r.status_code == 200
            bodies.append((node, r.content, r.headers["etag"]))

        async with trio.open_nursery() as n:
            for i in range(50):
                n.start_soon(read, i)

    # then the owner read storage once, the others not at all, and all 50 got the same bytes
    after = {n: cache_stats(cl, n) for n in cl.node_ids}
    delta = {n: after[n]["storage_reads"] - before[n]["storage_reads"] for n in cl.node_ids}
    assert delta == {n: (1 if n == owner else 0) for n in cl.node_ids}
    assert after[owner]["misses"] - before[owner]["misses"] == 1
    assert len(bodies) == 50 and len({(b, e) for _, b, e in bodies}) == 1


RANGE_CASES = [
    # Range header, then status, the expected (start, end) slice and Content-Range, for a body of n bytes
    (lambda n: "bytes=0-99", lambda n: (206, (0, 99), f"bytes 0-99/{n}")),
    (lambda n: "bytes=-100", lambda n: (206, (n - 100, n - 1), f"bytes {n - 100}-{n - 1}/{n}")),  # suffix
    (lambda n: "bytes=100-", lambda n: (206, (100, n - 1), f"bytes 100-{n - 1}/{n}")),  # open
    (lambda n: "bytes=0-", lambda n: (206, (0, n - 1), f"bytes 0-{n - 1}/{n}")),
    (lambda n: f"bytes={n - 1}-{n - 1}", lambda n: (206, (n - 1, n - 1), f"bytes {n - 1}-{n - 1}/{n}")),
    (lambda n: "bytes=-99999999", lambda n: (206, (0, n - 1), f"bytes 0-{n - 1}/{n}")),  # suffix > body
    (lambda n: "bytes=5-99999999", lambda n: (206, (5, n - 1), f"bytes 5-{n - 1}/{n}")),  # end clipped
    (lambda n: f"bytes={n}-", lambda n: (416, None, f"bytes */{n}")),  # starts past the end
    (lambda n: f"bytes={n}-{n + 10}", lambda n: (416, None, f"bytes */{n}")),
    (lambda n: "bytes=-0", lambda n: (416, None, f"bytes */{n}")),
    (lambda n: "bytes=0-1,5-6", lambda n: (200, None, None)),  # several ranges: whole body (documented)
    (lambda n: "bytes=10-5", lambda n: (200, None, None)),  # invalid: ignored, as RFC 9110 allows
    (lambda n: "items=0-5", lambda n: (200, None, None)),  # not a bytes range: ignored
]


@pytest.mark.parametrize("node_role", ["owner", "non_owner"])
def test_range_requests(cl, node_role):
    vid = cl.videos["a"]
    owner = owner_of(cl, vid)
    node = owner if node_role == "owner" else next(n for n in cl.node_ids if n != owner)
    url = hls_url(cl, node, vid, "240p/seg_00001.ts")
    full = httpx.get(url)
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    body, n = full.content, len(full.content)
    assert n > 200
    for make_header, expect in RANGE_CASES:
        header, (status, span, content_range) = make_header(n), expect(n)
        r = httpx.get(url, headers={"Range": header})
        assert r.status_code == status, (header, r.status_code)
        if status == 206:
            start, end = span
            assert r.content == body[start:end + 1], header
            assert int(r.headers["content-length"]) == end - start + 1
        elif status == 200:
            assert r.content == body and "content-range" not in r.headers, header
        else:
            assert r.json()["error"]["code"] == "bad_range"
        assert r.headers.get("content-range") == content_range, header
        assert r.headers["access-control-allow-origin"] == "*"
    # ETag revalidation, HEAD, and the headers players rely on
    etag = full.headers["etag"]
    assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert httpx.get(url, headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    assert httpx.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == n
    head = httpx.head(url, headers={"Range": "bytes=-10"})
    assert head.status_code == 206 and int(head.headers["content-length"]) == 10
    assert full.headers["content-type"] == "video/mp2t" and "immutable" in full.headers["cache-control"]
    pl = httpx.get(hls_url(cl, node, vid, "240p/index.m3u8"))
    assert pl.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert "immutable" not in pl.headers["cache-control"] and "max-age=" in pl.headers["cache-control"]
    # the internal route serves only committed HLS outputs, and only to nodes (docs/security.md)
    key = cl.launcher.secrets().cluster_key.encode()
    for rest in ("record.json", "source"):
        path = f"/v1/internal/objects/{vid}/{rest}"
        assert httpx.get(cl.url(owner) + path).status_code == 401  # anonymous
        proof = {peer_auth.HEADER: peer_auth.sign(key, "GET", path, time.time())}
        assert httpx.get(cl.url(owner) + path, headers=proof).status_code == 404


def test_owner_killed_during_playback_the_rest_still_arrives(cl):
    """Runs last in this module: it kills a node of the shared cluster."""
    vid = cl.videos["a"]
    owner = owner_of(cl, vid)
    player = next(n for n in cl.node_ids if n != owner)
    before = cache_stats(cl, player)
    # given ffmpeg playing in real time from a non-owner
    p = ffmpeg_play(hls_url(cl, player, vid), realtime=True)
    try:
        time.sleep(3.0)
        assert p.poll() is None, "playback ended before the owner was killed"
        # when the owner is killed mid-playback
        cl.kill(owner)
        # then a segment asked for right away arrives, from storage, with the same bytes
        seg = hls_url(cl, player, vid, "144p/seg_00004.ts")
        r = httpx.get(seg, timeout=10)
        assert r.status_code == 200
        survivors = [n for n in cl.node_ids if n != owner]
        same = {(httpx.get(hls_url(cl, n, vid, "144p/seg_00004.ts")).content) for n in survivors}
        assert same == {r.content}
        # and the player finishes the whole stream without an error
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-2000:]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    after = cache_stats(cl, player)
    assert after["hop_fallbacks"] > before["hop_fallbacks"]
    events = [line for line in cl.log_lines(player) if line.get("event") == "cache_hop_failed"]
    assert events and all(e["owner"] == owner for e in events)
