"""/metrics of live node processes (real S3, real ffmpeg), read with prometheus_client's parser.

Given a 2-node cluster, when a video is uploaded in one shot, a tus upload gets a PATCH and is
terminated, and the video is played from its owner (a miss, then hits) and from the other node
(a hop), then each node's /metrics parses as Prometheus text, every family has the type the doc
gives it, and the counts moved: requests by route class, body bytes, storage latency by
operation, tus PATCH phases, one transcode with its seconds of video, process RSS, CPU and
files; and each node's log has one ``http_request`` line per request it answered.
"""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import media
from conftest import TEST_LADDER
from harness import owner_of, upload, wait_state

pytestmark = pytest.mark.cluster

TUS = {"Tus-Resumable": "1.0.0"}
SECONDS = 2


def scrape(c, node: str) -> dict:
    r = httpx.get(c.url(node) + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def sample(fams: dict, family: str, sample_name: str, **labels: str) -> float:
    """The value of one sample (0 when the series does not exist yet)."""
    for s in fams[family].samples:
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


def requests(fams: dict, route: str, status: str) -> float:
    return sample(fams, "shoal_http_request_duration_seconds", "shoal_http_request_duration_seconds_count",
                  route=route, status=status)


def storage_calls(fams: dict, operation: str) -> float:
    return sample(fams, "shoal_storage_request_duration_seconds", "shoal_storage_request_duration_seconds_count",
                  operation=operation, outcome="ok")


def access(c, node: str, **match) -> list[dict]:
    return [line for line in c.log_lines(node)
            if line.get("event") == "http_request" and all(line.get(k) == v for k, v in match.items())]


def test_a_live_node_exports_what_it_did(cluster_factory, tmp_path):
    c = cluster_factory(nodes=2, overrides={"ladder": TEST_LADDER})
    src = media.make_video(tmp_path / "in.mp4", seconds=SECONDS, width=320, height=240)
    data = src.read_bytes()

    # a one-shot upload on n1, processed to ready
    r = upload(c, "n1", src)
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    wait_state(c, "n1", vid, "ready", timeout=120)

    # a tus upload on n1: created, one PATCH of half the bytes, terminated
    meta = "filename " + base64.b64encode(b"clip.mp4").decode()
    r = httpx.post(c.url("n1") + "/v1/uploads", headers=c.headers({**TUS, "Upload-Length": str(len(data)),
                                                                   "Upload-Metadata": meta}), timeout=30)
    assert r.status_code == 201, r.text
    loc = r.headers["Location"]
    half = len(data) // 2
    r = httpx.patch(c.url("n1") + loc, content=data[:half], timeout=60, headers=c.headers(
        {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}))
    assert r.status_code == 204, r.text
    assert httpx.delete(c.url("n1") + loc, headers=c.headers(TUS), timeout=30).status_code == 204

    # playback: from the owner (a miss, then two hits) and from the other node (a hop)
    owner = owner_of(c, vid)
    other = "n2" if owner == "n1" else "n1"
    seg = f"/v1/videos/{vid}/hls/144p/seg_00000.ts"
    played = [httpx.get(c.url(owner) + seg, timeout=30) for _ in range(3)]
    hopped = httpx.get(c.url(other) + seg, timeout=30)
    assert all(p.status_code == 200 for p in played) and hopped.status_code == 200
    assert hopped.content == played[0].content

    fams = {n: scrape(c, n) for n in c.node_ids}
    up, own, oth = fams["n1"], fams[owner], fams[other]

    # types, as docs/operations.md gives them (the parser names a counter without its _total)
    for f, kind in [("shoal_http_request_duration_seconds", "histogram"), ("shoal_http_received_bytes", "counter"),
                    ("shoal_storage_request_duration_seconds", "histogram"),
                    ("shoal_tus_patch_phase_seconds", "histogram"),
                    ("shoal_transcode_seconds_per_video_second", "histogram"), ("shoal_transcode_seconds", "counter"),
                    ("shoal_cache_hits", "counter"), ("shoal_cache_bytes", "gauge"), ("shoal_members", "gauge"),
                    ("shoal_worker_claims", "counter"), ("shoal_jobs_in_flight", "gauge"),
                    ("process_resident_memory_bytes", "gauge"), ("process_cpu_seconds", "counter")]:
        assert up[f].type == kind, (f, up[f].type)

    # uploads: the request classes, the body bytes, the storage calls behind them
    assert requests(up, "upload_one_shot", "2xx") == 1
    assert requests(up, "tus_patch", "2xx") == 1
    assert requests(up, "tus_other", "2xx") >= 2  # create and terminate
    assert sample(up, "shoal_http_received_bytes", "shoal_http_received_bytes_total",
                  route="upload_one_shot") == len(data)
    assert sample(up, "shoal_http_received_bytes", "shoal_http_received_bytes_total", route="tus_patch") == half
    assert sample(up, "shoal_uploads_accepted", "shoal_uploads_accepted_total") == 1
    for op in ("cas", "create_multipart", "complete_multipart"):
        assert storage_calls(up, op) >= 1, op
    assert storage_calls(up, "upload_part_stream") + storage_calls(up, "upload_part") >= 1
    for phase in ("lock", "receive", "drain", "commit"):
        assert sample(up, "shoal_tus_patch_phase_seconds", "shoal_tus_patch_phase_seconds_count", phase=phase) == 1

    # processing: one transcode somewhere, of SECONDS of video
    both = list(fams.values())
    assert sum(sample(f, "shoal_transcode_seconds_per_video_second",
                      "shoal_transcode_seconds_per_video_second_count") for f in both) == 1
    assert sum(sample(f, "shoal_transcoded_video_seconds", "shoal_transcoded_video_seconds_total")
               for f in both) == pytest.approx(SECONDS, abs=0.5)
    assert sum(sample(f, "shoal_transcode_seconds", "shoal_transcode_seconds_total") for f in both) > 0
    assert sum(sample(f, "shoal_worker_commits", "shoal_worker_commits_total") for f in both) == 1
    assert sum(storage_calls(f, "get") for f in both) >= 1  # the source download and segment reads

    # playback, classed by the path that answered
    assert requests(own, "playback_miss", "2xx") == 1 and requests(own, "playback_hit", "2xx") == 2
    assert requests(oth, "playback_hop", "2xx") == 1
    assert requests(own, "internal_hop", "2xx") == 1  # the owner answered the other's hop
    assert sample(own, "shoal_http_sent_bytes", "shoal_http_sent_bytes_total",
                  route="playback_hit") == 2 * len(played[0].content)
    assert sample(own, "shoal_cache_hits", "shoal_cache_hits_total") >= 2

    # the node and the process
    for f in both:
        assert sample(f, "shoal_members", "shoal_members", state="alive") == 2
        assert sample(f, "shoal_up", "shoal_up") == 1 and sample(f, "shoal_storage_ok", "shoal_storage_ok") == 1
        assert sample(f, "process_resident_memory_bytes", "process_resident_memory_bytes") > 10 << 20
        assert sample(f, "process_cpu_seconds", "process_cpu_seconds_total") > 0
        assert sample(f, "process_open_fds", "process_open_fds") > 0

    # the access log: one line per request, with its facts
    deadline = time.monotonic() + 10  # a log line is written after the answer: give it a moment
    while time.monotonic() < deadline and len(access(c, other, route="playback_hop")) < 1:
        time.sleep(0.1)
    [one_shot] = access(c, "n1", route="upload_one_shot")
    assert (one_shot["method"], one_shot["status"], one_shot["bytes_in"]) == ("POST", 201, len(data))
    assert one_shot["node"] == "n1" and one_shot["ms"] > 0 and one_shot["bytes_out"] > 0
    [tus_patch] = access(c, "n1", route="tus_patch")
    assert (tus_patch["method"], tus_patch["status"], tus_patch["bytes_in"]) == ("PATCH", 204, half)
    assert len(access(c, owner, route="playback_hit", method="GET", status=200)) == 2
    assert len(access(c, owner, route="playback_miss", status=200)) == 1
    [hop] = access(c, other, route="playback_hop")
    assert hop["bytes_out"] == len(hopped.content)
    # and exactly as many lines as the metric counted on each node, plus the scrape itself (counted
    # once its answer was sent, after the text was made); nothing else asks the nodes meanwhile
    for n in c.node_ids:
        counted = sum(s.value for s in fams[n]["shoal_http_request_duration_seconds"].samples
                      if s.name.endswith("_count"))
        while time.monotonic() < deadline and len(access(c, n)) < counted + 1:
            time.sleep(0.1)
        assert len(access(c, n)) == counted + 1, n
        assert access(c, n)[-1]["route"] == "ops"
