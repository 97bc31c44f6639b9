"""Issue 2 end to end: real node processes, the real S3 server (SeaweedFS), real ffmpeg.

Given a 3-node cluster, when a video is uploaded, then it becomes ready exactly once,
plays from every node, and survives restarts; bad input gets the contract's errors.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import m3u8
import pytest

import media
from conftest import TEST_LADDER
from harness import upload, wait_state
from node.records import layout

pytestmark = pytest.mark.cluster


def s3_objects(c, prefix: str) -> list[str]:
    """List keys straight from the S3 server (independent of the nodes), with boto3 sync."""
    import boto3
    s3 = boto3.client("s3", endpoint_url=c.s3_endpoint, aws_access_key_id=c.access_key,
                      aws_secret_access_key=c.secret_key, region_name="us-east-1")
    keys, token = [], None
    while True:
        kw = {"Bucket": c.bucket, "Prefix": prefix}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        keys += [o["Key"] for o in r.get("Contents", [])]
        if not r.get("IsTruncated"):
            return keys
        token = r["NextContinuationToken"]


def s3_record(c, vid: str) -> dict:
    import boto3
    s3 = boto3.client("s3", endpoint_url=c.s3_endpoint, aws_access_key_id=c.access_key,
                      aws_secret_access_key=c.secret_key, region_name="us-east-1")
    return json.loads(s3.get_object(Bucket=c.bucket, Key=layout.record_key(vid))["Body"].read())


def assert_committed_once(c, vid: str) -> dict:
    """Storage, not the API, says: one `ready` in history, and only that epoch's outputs exist."""
    rec = s3_record(c, vid)
    assert rec["state"] == "ready"
    assert [h["state"] for h in rec["history"]].count("ready") == 1
    epochs = {k.split("/")[3] for k in s3_objects(c, layout.out_prefix(vid))}
    assert epochs == {str(rec["ready_epoch"])}, f"outputs of other attempts remain: {epochs}"
    return rec


def play_all(c, vid: str, master_node: str = "n1", alive: list[str] | None = None) -> dict[str, bytes]:
    """Fetch the master from one node and every playlist and segment from the other nodes."""
    base = f"/v1/videos/{vid}/hls/"
    r = httpx.get(c.url(master_node) + base + "master.m3u8")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert r.headers["access-control-allow-origin"] == "*"
    master = m3u8.loads(r.text)
    assert master.is_variant and len(master.playlists) >= 3
    others = [n for n in (alive or c.node_ids) if n != master_node]
    got: dict[str, bytes] = {}
    counts, durations = set(), set()
    i = 0
    for pl in master.playlists:
        si = pl.stream_info
        assert si.bandwidth and si.resolution and si.codecs
        node = others[i % len(others)]
        i += 1
        media_pl = httpx.get(c.url(node) + base + pl.uri)
        assert media_pl.status_code == 200
        mp = m3u8.loads(media_pl.text)
        assert mp.is_endlist and mp.playlist_type.lower() == "vod"
        counts.add(len(mp.segments))
        durations.add(tuple(round(s.duration, 3) for s in mp.segments))
        folder = pl.uri.rsplit("/", 1)[0]
        for seg in mp.segments:
            node = others[i % len(others)]
            i += 1
            sr = httpx.get(c.url(node) + base + f"{folder}/{seg.uri}")
            assert sr.status_code == 200 and sr.headers["x-served-by"] == node != master_node
            assert "immutable" in sr.headers["cache-control"] and sr.headers["etag"]
            got[f"{folder}/{seg.uri}"] = sr.content
    assert len(counts) == 1 and len(durations) == 1, "renditions must be segment-aligned"
    return got


def test_upload_becomes_ready_and_plays_from_every_node(cluster_factory, tmp_path):
    c = cluster_factory(3, {"ladder": TEST_LADDER})
    src = media.make_video(tmp_path / "in.mp4", seconds=5, width=320, height=240)
    r = upload(c, "n1", src)
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    assert r.json()["state"] == "uploaded" and layout.valid_id(vid)
    # before ready, playback is 409 not_ready (or it is already ready on a fast machine)
    early = httpx.get(c.url("n2") + f"/v1/videos/{vid}/hls/master.m3u8")
    assert early.status_code in (200, 409)
    if early.status_code == 409:
        assert early.json()["error"]["code"] == "not_ready"
    rec = wait_state(c, "n3", vid, "ready", timeout=90)
    assert len(rec["renditions"]) == 3
    assert rec["playback"]["hls"] == f"/v1/videos/{vid}/hls/master.m3u8"
    assert [h["state"] for h in rec["history"]] == ["uploaded", "processing", "ready"]
    play_all(c, vid)
    assert_committed_once(c, vid)
    assert_poster_everywhere(c, vid, rec, (320, 240))
    # a real player (ffmpeg) decodes the whole HLS stream over HTTP
    out = subprocess.run([media.ffmpeg_exe() if hasattr(media, "ffmpeg_exe") else _ffmpeg(), "-v", "error",
                          "-i", c.url("n2") + f"/v1/videos/{vid}/hls/master.m3u8", "-map", "0", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # the source bytes are exactly what we sent
    import boto3, hashlib
    s3 = boto3.client("s3", endpoint_url=c.s3_endpoint, aws_access_key_id=c.access_key,
                      aws_secret_access_key=c.secret_key, region_name="us-east-1")
    body = s3.get_object(Bucket=c.bucket, Key=layout.source_key(vid))["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(src.read_bytes()).digest()
    # listing and deletion
    listed = httpx.get(c.url("n2") + "/v1/videos?state=ready").json()
    assert vid in [v["id"] for v in listed["videos"]]
    d = httpx.delete(c.url("n3") + f"/v1/videos/{vid}", headers=c.headers())
    assert d.status_code == 202 and d.json()["state"] == "deleted"
    time.sleep(1.2)  # playback caches a ready record for at most 1 s
    assert httpx.get(c.url("n1") + f"/v1/videos/{vid}/hls/master.m3u8").status_code == 404
    assert httpx.get(c.url("n1") + f"/v1/videos/{vid}").json()["state"] == "deleted"
    assert s3_objects(c, layout.video_prefix(vid)) == [layout.record_key(vid)]


def assert_poster_everywhere(c, vid: str, rec: dict, size: tuple[int, int]) -> None:
    """The video's poster: named by the record, the same JPEG (bytes and ETag) from every node,
    immutable, of the source's frame size; not under hls/."""
    assert rec["playback"]["poster"] == f"/v1/videos/{vid}/poster.jpg"
    answers = [httpx.get(c.url(n) + rec["playback"]["poster"]) for n in c.node_ids]
    for a in answers:
        assert a.status_code == 200, a.text
        assert a.headers["content-type"] == "image/jpeg" and "immutable" in a.headers["cache-control"]
        assert a.content[:3] == b"\xff\xd8\xff" and a.content[-2:] == b"\xff\xd9"
    assert len({a.content for a in answers}) == 1 and len({a.headers["etag"] for a in answers}) == 1
    again = httpx.get(c.url("n2") + rec["playback"]["poster"], headers={"If-None-Match": answers[0].headers["etag"]})
    assert again.status_code == 304
    probe = subprocess.run([_ffmpeg(), "-v", "error", "-i", "-", "-f", "null", "-"], input=answers[0].content,
                           capture_output=True, timeout=30)
    assert probe.returncode == 0, probe.stderr[-500:]
    import av, io
    with av.open(io.BytesIO(answers[0].content)) as f:
        s = f.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == size
    assert httpx.get(c.url("n1") + f"/v1/videos/{vid}/hls/poster.jpg").status_code == 404


def _ffmpeg() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def test_idempotency_key_retry_returns_the_same_video_processed_once(cluster_factory, tmp_path):
    c = cluster_factory(3, {"ladder": TEST_LADDER})
    src = media.make_video(tmp_path / "in.mp4", seconds=2)
    first = upload(c, "n1", src, {"Idempotency-Key": "client-123"})
    again = upload(c, "n2", src, {"Idempotency-Key": "client-123"})
    other = upload(c, "n3", src, {"Idempotency-Key": "client-456"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    vid = first.json()["id"]
    wait_state(c, "n1", vid, "ready", timeout=90)
    third = upload(c, "n3", src, {"Idempotency-Key": "client-123"})
    assert third.json()["id"] == vid and third.json()["state"] == "ready"
    rec = assert_committed_once(c, vid)
    assert rec["attempts"] == 1
    records = [k for k in s3_objects(c, "videos/") if k.endswith("record.json")]
    assert len(records) == 2  # client-123 and client-456 only


def test_bad_input_gets_clear_errors_and_loses_nothing(cluster_factory, tmp_path):
    c = cluster_factory(2, {"ladder": TEST_LADDER, "limits": {"max_upload_bytes": 2_000_000}})
    good = upload(c, "n1", media.make_video(tmp_path / "ok.mp4", seconds=2))
    assert good.status_code == 201
    good_id = good.json()["id"]

    rnd = upload(c, "n1", media.make_random_bytes(tmp_path / "rnd.bin", 300_000))
    trunc = upload(c, "n2", media.make_truncated_mp4(tmp_path / "t.mp4"))
    assert rnd.status_code == 201 and trunc.status_code == 201  # durable first; decoding is processing's job
    for r in (rnd, trunc):
        rec = wait_state(c, "n2", r.json()["id"], {"failed", "ready"}, timeout=60)
        assert rec["state"] == "failed"
        assert rec["error"]["code"] == "undecodable_input" and rec["error"]["message"]
        assert rec["attempts"] == 1  # the user's problem: no retry

    def err(r, status, code):
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
        assert "Traceback" not in r.text

    err(upload(c, "n1", b""), 400, "empty_body")
    err(upload(c, "n1", b"x" * 2_000_001), 413, "too_large")
    err(httpx.post(c.url("n1") + "/v1/videos", content=b"abc"), 401, "unauthorized")
    err(httpx.post(c.url("n1") + "/v1/videos", content=b"abc", headers={"Authorization": "Bearer nope"}),
        403, "forbidden")
    err(httpx.get(c.url("n1") + "/v1/videos/" + "a" * 26), 404, "not_found")
    err(httpx.get(c.url("n1") + "/v1/videos/..%2F..%2Fetc"), 404, "not_found")
    err(httpx.get(c.url("n1") + "/v1/videos/NOT-AN-ID/hls/master.m3u8"), 404, "not_found")
    err(httpx.get(c.url("n1") + "/v1/videos?limit=abc"), 400, "bad_limit")
    err(httpx.get(c.url("n1") + "/v1/nothing-here"), 404, "not_found")

    # a body shorter than its Content-Length: the client goes away; no video appears
    before = len(s3_objects(c, "catalog/"))
    port = int(c.url("n1").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                  + f"Authorization: Bearer {c.token}\r\n\r\n".encode() + b"y" * 5000)
        time.sleep(0.3)
    time.sleep(1.0)
    assert len(s3_objects(c, "catalog/")) == before
    assert not [k for k in s3_objects(c, "videos/") if k.endswith("/source") and
                k.split("/")[1] not in {good_id, rnd.json()["id"], trunc.json()["id"]}]

    # what was acknowledged is still there and still becomes ready
    assert wait_state(c, "n2", good_id, "ready", timeout=90)["state"] == "ready"


def test_kill_9_of_the_lease_holder_mid_transcode_hands_off(cluster_factory, tmp_path):
    c = cluster_factory(3, {"ladder": TEST_LADDER, "timing": {"lease_seconds": 4},
                            "processing": {"preset": "slow", "ffmpeg_threads": 1}})
    src = media.make_video(tmp_path / "long.mp4", seconds=16, width=640, height=360)
    vid = upload(c, "n1", src).json()["id"]
    holder = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rec = httpx.get(c.url("n2") + f"/v1/videos/{vid}").json()
        if rec["state"] == "processing" and rec.get("owner"):
            holder = rec["owner"]
            jobs = httpx.get(c.url(holder) + "/v1/node").json()["jobs"]
            if jobs and jobs[0]["phase"] == "transcoding":
                break
        assert rec["state"] in ("uploaded", "processing"), rec
        time.sleep(0.05)
    assert holder, "never saw the video being transcoded"
    c.kill(holder)
    killed_at = time.time()
    survivor = next(n for n in c.node_ids if n != holder)
    rec = wait_state(c, survivor, vid, "ready", timeout=120)
    procs = [h for h in rec["history"] if h["state"] == "processing"]
    assert procs[0]["node"] == holder and procs[-1]["node"] != holder
    assert procs[-1]["epoch"] > procs[0]["epoch"]
    assert procs[-1]["at"] >= killed_at - 0.5
    final = assert_committed_once(c, vid)
    assert final["ready_epoch"] == procs[-1]["epoch"]  # the dead attempt's output is never served
    play_all(c, vid, master_node=survivor, alive=[n for n in c.node_ids if n != holder])


def test_restart_every_node_and_storage_loses_nothing(cluster_factory, tmp_path):
    import signal
    c = cluster_factory(3, {"ladder": TEST_LADDER})
    ready_id = upload(c, "n1", media.make_video(tmp_path / "a.mp4", seconds=2)).json()["id"]
    wait_state(c, "n1", ready_id, "ready", timeout=90)
    pending_id = upload(c, "n2", media.make_video(tmp_path / "b.mp4", seconds=3)).json()["id"]
    for n in c.node_ids:
        c.kill(n)
    c.stop_storage(signal.SIGKILL)
    c.start_storage()
    for n in c.node_ids:
        c.start_node(n, wait=False)
    c.wait_ready()
    wait_state(c, "n3", pending_id, "ready", timeout=120)
    for vid in (ready_id, pending_id):
        assert_committed_once(c, vid)
        play_all(c, vid, master_node="n2")
