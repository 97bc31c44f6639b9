"""Security finding 1 end to end, on real node processes, the real S3 server and real ffmpeg:
deleted and uncommitted outputs are not readable, and internal hops need the cluster key.

Given a 3-node cluster with a ready video played from every node (the owner's cache filled,
the other nodes hopping to it), then: internal object requests without ``X-Shoal-Hop`` get 401,
with a wrong one 403, for another epoch than the ready one 404, and an anonymous one fills no
cache; and after a DELETE's 202, no node answers any playlist or segment of the video later
than 2 s (docs/security.md, "Playback and the owner hop").
"""

from __future__ import annotations

import time

import httpx
import m3u8
import pytest

from conftest import TEST_LADDER
from harness import Cluster, cluster_with_ready_videos, owner_of
from node import peer_auth

pytestmark = pytest.mark.cluster

BOUND = 2.0  # seconds after the DELETE's 202


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    yield from cluster_with_ready_videos(tmp_path_factory.mktemp("delete_evicts"), ("a", "b"), seconds=6,
                                         overrides={"ladder": TEST_LADDER})


def hls_paths(c: Cluster, vid: str) -> list[str]:
    """master.m3u8, every media playlist and every segment, read from n1."""
    base = c.url("n1") + f"/v1/videos/{vid}/hls/"
    master = m3u8.loads(httpx.get(base + "master.m3u8").text)
    out = ["master.m3u8"]
    for pl in master.playlists:
        folder = pl.uri.rsplit("/", 1)[0]
        out.append(pl.uri)
        out += [f"{folder}/{s.uri}" for s in m3u8.loads(httpx.get(base + pl.uri).text).segments]
    return out


def signed(c: Cluster, method: str, path: str, *, now: float | None = None) -> dict[str, str]:
    key = c.launcher.secrets().cluster_key.encode()
    return {peer_auth.HEADER: peer_auth.sign(key, method, path, time.time() if now is None else now)}


def cache_entries(c: Cluster, node: str) -> int:
    return httpx.get(c.url(node) + "/v1/node").json()["cache"]["entries"]


def test_internal_requests_need_the_cluster_key_and_the_ready_epoch(cl):
    vid = cl.videos["b"]
    owner = owner_of(cl, vid)
    other = next(n for n in cl.node_ids if n != owner)
    epoch = httpx.get(cl.url("n1") + f"/v1/videos/{vid}").json()["epoch"]
    path = f"/v1/internal/objects/{vid}/out/{epoch}/master.m3u8"
    entries_before = cache_entries(cl, other)
    for node in (owner, other):
        # anonymous: 401, in the contract's error shape; and nothing is cached for it
        r = httpx.get(cl.url(node) + path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (node, r.text)
        # signed with another key, for another path, or too long ago: 403
        wrong = {peer_auth.HEADER: peer_auth.sign(b"not-the-cluster-key", "GET", path, time.time())}
        for headers in (wrong, signed(cl, "GET", path + "x"), signed(cl, "GET", path, now=time.time() - 120),
                        {peer_auth.HEADER: "garbage"}):
            r = httpx.get(cl.url(node) + path, headers=headers)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (node, headers, r.text)
        # signed, the ready epoch: served
        r = httpx.get(cl.url(node) + path, headers=signed(cl, "GET", path))
        assert r.status_code == 200 and r.content.startswith(b"#EXTM3U"), (node, r.status_code)
        # signed, any other epoch: 404, even though nothing else is wrong with the path
        for stale in (epoch - 1, epoch + 1, 0):
            p = f"/v1/internal/objects/{vid}/out/{stale}/master.m3u8"
            r = httpx.get(cl.url(node) + p, headers=signed(cl, "GET", p))
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (node, stale)
        # the eviction notice needs the key as well
        r = httpx.post(cl.url(node) + "/v1/internal/evict", json={"video": vid})
        assert r.status_code == 401
    # the refused requests filled no cache on the non-owner (the signed one filled one entry)
    assert cache_entries(cl, other) <= entries_before + 1


def test_a_deleted_video_is_served_by_no_node_two_seconds_after_the_202(cl):
    vid = cl.videos["a"]
    paths = hls_paths(cl, vid)
    owner = owner_of(cl, vid)
    # given: the video played from every node (owner cache filled; non-owners hop to it)
    for node in cl.node_ids:
        for p in paths:
            assert httpx.get(cl.url(node) + f"/v1/videos/{vid}/hls/{p}").status_code == 200
    assert cache_entries(cl, owner) >= len(paths)
    deleter = next(n for n in cl.node_ids if n != owner)  # not the owner: the notice must travel
    # when: the DELETE is answered 202
    r = httpx.delete(cl.url(deleter) + f"/v1/videos/{vid}", headers=cl.headers())
    assert r.status_code == 202
    t0 = time.monotonic()
    # then: every request sent later than BOUND seconds after the 202 is a 404 on every node
    late_ok: list[tuple[str, str, int, float]] = []
    gone: set[tuple[str, str]] = set()
    with httpx.Client() as client:
        while time.monotonic() - t0 < BOUND + 1.0:
            for node in cl.node_ids:
                for p in paths:
                    sent = time.monotonic() - t0
                    s = client.get(cl.url(node) + f"/v1/videos/{vid}/hls/{p}").status_code
                    if s == 404:
                        gone.add((node, p))
                    elif sent >= BOUND:
                        late_ok.append((node, p, s, round(sent, 3)))
    assert not late_ok, late_ok[:10]
    assert gone == {(n, p) for n in cl.node_ids for p in paths}
    # and the internal hop of the deleted video's epoch is a 404 too, signed or not refused
    epoch = httpx.get(cl.url("n1") + f"/v1/videos/{vid}").json()["epoch"]
    ip = f"/v1/internal/objects/{vid}/out/{epoch}/master.m3u8"
    for node in cl.node_ids:
        assert httpx.get(cl.url(node) + ip, headers=signed(cl, "GET", ip)).status_code == 404
    # and the owner dropped the cached objects when told (the notice arrived)
    evicted = [line for line in cl.log_lines(owner) if line.get("event") == "cache_video_evicted"
               and line.get("video") == vid]
    assert evicted and evicted[-1]["objects"] >= len(paths)
