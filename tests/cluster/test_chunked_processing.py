"""Issue 12 with real processes: three nodes encode one video in chunks, a crash redoes one chunk.

Real node processes, the real S3 server (SeaweedFS), real ffmpeg.  A 30 s tiny source is cut
into chunks of two 2-second segments (8 chunks and the audio unit), placed on the ring by unit
key.  Given the cluster, when the video is uploaded, then it is ready once, its units were
encoded by more than one node, every stitched rendition decodes end to end over HTTP without an
error, lasts as long as the source within one frame, and its segment timestamps run on across
chunk borders.  When a node holding a unit is killed with SIGKILL, only the units it held and
had not committed are redone (their epoch says so); everything else keeps its first epoch.
"""

from __future__ import annotations

import io
import subprocess
import time

import av
import httpx
import m3u8
import pytest

import media
from harness import upload, wait_state
from node.process import ffmpeg_exe
from node.records import layout
from test_ownership_handoff import wait_members
from test_upload_process_play import assert_poster_everywhere, s3_objects, s3_record

pytestmark = pytest.mark.cluster

SECONDS, FPS = 30, 10
CHUNKED = {"processing": {"chunked": True, "chunk_segments": 2, "preset": "ultrafast"},
           "ladder": [{"name": "54p", "height": 54, "video_kbps": 80, "audio_kbps": 32},
                      {"name": "90p", "height": 90, "video_kbps": 150, "audio_kbps": 48}]}


# slow enough per chunk to be caught mid-encode: 320x180 at 25 fps, preset slow
SLOW_CHUNKED = {**CHUNKED, "processing": {**CHUNKED["processing"], "preset": "slow"},
                "ladder": [{"name": "144p", "height": 144, "video_kbps": 150, "audio_kbps": 48},
                           {"name": "180p", "height": 180, "video_kbps": 250, "audio_kbps": 48}]}


def slow_chunked_upload(cluster_factory, tmp_path) -> tuple:
    """A converged 3-node cluster with SLOW_CHUNKED, and the id of a video uploaded through n1."""
    c = converged(cluster_factory, SLOW_CHUNKED)
    src = media.make_video(tmp_path / "src.mp4", seconds=SECONDS, width=320, height=180, fps=25)
    return c, upload(c, "n1", src).json()["id"]


def converged(cluster_factory, overrides: dict):
    c = cluster_factory(3, overrides)
    for n in c.node_ids:
        wait_members(c, n, {m: "alive" for m in c.node_ids})
    return c


def assert_units_committed_once(c, vid: str) -> dict:
    """Storage says: one `ready`; every unit committed; only committed epochs' outputs remain."""
    rec = s3_record(c, vid)
    assert rec["state"] == "ready" and [h["state"] for h in rec["history"]].count("ready") == 1
    units = rec["segments_from"]["units"]
    assert len(units) == 9 and set(units) == {f"{i:05d}" for i in range(8)} | {"audio"}
    deadline = time.monotonic() + 30  # stale epochs are collected right after the commit
    while True:
        seen = {(k.split("/")[3], int(k.split("/")[4])) for k in s3_objects(c, layout.chunk_out_prefix(vid))}
        if seen == set(units.items()):
            return rec
        if time.monotonic() > deadline:
            raise AssertionError(f"unit outputs {sorted(seen)} but committed {sorted(units.items())}")
        time.sleep(0.5)


def check_stream(c, vid: str, node: str, fps: int = FPS) -> None:
    """Every rendition over HTTP: ffmpeg decodes it without an error; its frames run on across
    segment (and chunk) borders and add up to the source."""
    base = c.url(node) + f"/v1/videos/{vid}/hls/"
    master = m3u8.loads(httpx.get(base + "master.m3u8").text)
    assert [m.type for m in master.media] == ["AUDIO"]
    uris = [p.uri for p in master.playlists] + [master.media[0].uri]
    assert len(uris) == 3
    for uri in uris:
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error",
                               "-protocol_whitelist", "http,tcp,file,crypto", "-i", base + uri,
                               "-f", "null", "-"], capture_output=True, timeout=120)
        assert proc.returncode == 0 and proc.stderr.decode().strip() == "", (uri, proc.stderr[-2000:])
    frame = 1 / fps
    for p in master.playlists:
        folder = p.uri.rsplit("/", 1)[0]
        spans = []
        for seg in m3u8.loads(httpx.get(base + p.uri).text).segments:
            body = httpx.get(base + f"{folder}/{seg.uri}").content
            with av.open(io.BytesIO(body), format="mpegts") as ct:
                times = [f.time for f in ct.decode(ct.streams.video[0])]
            spans.append((min(times), max(times) + frame, len(times)))
        for k, (a, b) in enumerate(zip(spans, spans[1:])):
            assert abs(b[0] - a[1]) < frame / 2, f"{folder} segment {k + 1} starts {b[0] - a[1]:+.4f} s off"
        assert sum(n for *_, n in spans) == SECONDS * fps
        assert abs((spans[-1][1] - spans[0][0]) - SECONDS) <= frame


def test_three_nodes_encode_one_video_in_chunks_into_one_continuous_stream(cluster_factory, tmp_path):
    c = converged(cluster_factory, CHUNKED)
    src = media.make_video(tmp_path / "src.mp4", seconds=SECONDS, width=160, height=90, fps=FPS)
    vid = upload(c, "n1", src).json()["id"]
    rec = wait_state(c, "n2", vid, "ready", timeout=180)
    # the API shows every unit, committed, with who encoded it
    assert rec["progress"] == 1.0 and len(rec["chunks"]) == 9
    assert {ch["state"] for ch in rec["chunks"]} == {"committed"}
    assert [ch["index"] for ch in rec["chunks"]] == [*range(8), None]
    assert [ch["start"] for ch in rec["chunks"][:8]] == [4.0 * i for i in range(8)]
    encoders = {ch["node"] for ch in rec["chunks"]}
    assert len(encoders) > 1, f"every unit was encoded by {encoders}"
    assert_units_committed_once(c, vid)
    check_stream(c, vid, "n3")
    # the poster was made by chunk 0's holder, under the epoch its unit committed
    assert_poster_everywhere(c, vid, rec, (160, 90))
    epoch0 = next(ch["epoch"] for ch in rec["chunks"] if ch["index"] == 0)
    assert layout.chunk_out_prefix(vid, "00000", epoch0) + "poster.jpg" in s3_objects(c, layout.video_prefix(vid))


def wait_unit_in_flight(c, vid: str, owner: str, timeout: float = 120) -> tuple[str, str]:
    """A node other than the video's owner transcoding a unit of ``vid``: (node, unit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in c.node_ids:
            if n == owner:
                continue
            try:
                jobs = httpx.get(c.url(n) + "/v1/node", timeout=2).json()["jobs"]
            except httpx.HTTPError:
                continue
            for j in jobs:
                if j["video"].startswith(vid + "/") and j["phase"] == "transcoding":
                    return n, j["video"].split("/")[1]
        time.sleep(0.02)
    raise AssertionError("never saw a unit transcoding on a node other than the owner")


def test_kill_9_of_a_unit_holder_redoes_only_its_units(cluster_factory, tmp_path):
    c, vid = slow_chunked_upload(cluster_factory, tmp_path)
    deadline = time.monotonic() + 60
    while (holder := httpx.get(c.url("n1") + f"/v1/cluster/owner/{vid}").json().get("lease")) is None:
        assert time.monotonic() < deadline, "the video was never claimed"
        time.sleep(0.05)
    owner = holder["holder"] if isinstance(holder, dict) else holder
    victim, unit = wait_unit_in_flight(c, vid, owner)
    # when the unit holder dies without a word
    c.kill(victim)
    survivor = next(n for n in c.node_ids if n not in (victim,))
    rec = wait_state(c, survivor, vid, "ready", timeout=240)
    stored = assert_units_committed_once(c, vid)
    # then the units the victim held uncommitted were redone by others, with a new epoch, and
    # nothing else was: every other unit kept its first epoch
    lines = c.log_lines(victim)
    claimed = {e["unit"] for e in lines if e["event"] == "chunk_claimed" and e.get("video") == vid}
    committed = {e["unit"] for e in lines if e["event"] == "chunk_committed" and e.get("video") == vid}
    lost = claimed - committed
    assert unit in lost
    redone = {u for u, e in stored["segments_from"]["units"].items() if e > 1}
    assert redone == lost, (redone, lost)
    by_unit = {ch["unit"]: ch for ch in rec["chunks"]}
    assert all(by_unit[u]["node"] != victim for u in lost)
    # and the takers said whose unit they took
    takers = [e for n in c.node_ids if n != victim for e in c.log_lines(n)
              if e["event"] == "chunk_lost" and e.get("video") == vid]
    assert {e["unit"] for e in takers} == lost and {e["holder"] for e in takers} == {victim}
    check_stream(c, vid, survivor, fps=25)


def test_delete_during_chunked_processing_cancels_the_units_and_collects_their_outputs(
        cluster_factory, tmp_path):
    c, vid = slow_chunked_upload(cluster_factory, tmp_path)
    node, unit = wait_unit_in_flight(c, vid, owner="")
    # when the video is deleted while a unit is being encoded
    r = httpx.delete(c.url("n2") + f"/v1/videos/{vid}", headers=c.headers())
    assert r.status_code == 202 and r.json()["state"] == "deleted"
    # then every node stops its work on it, and only the tombstone record is left
    deadline = time.monotonic() + 60
    while True:
        busy = [j["video"] for n in c.node_ids
                for j in httpx.get(c.url(n) + "/v1/node").json()["jobs"] if j["video"].startswith(vid)]
        left = [k for k in s3_objects(c, layout.video_prefix(vid)) if k != layout.record_key(vid)]
        if not busy and not left:
            break
        assert time.monotonic() < deadline, f"still working: {busy}; objects left: {left}"
        time.sleep(0.5)
    assert s3_record(c, vid)["state"] == "deleted"
    lost = [e for e in c.log_lines(node) if e["event"] == "chunk_lost" and e.get("video") == vid]
    assert any(e["unit"] == unit for e in lost)
    assert httpx.get(c.url("n3") + f"/v1/videos/{vid}/hls/master.m3u8").status_code == 404


def test_kill_9_of_the_owner_while_units_run_hands_the_video_over_without_redoing_committed_units(
        cluster_factory, tmp_path):
    c, vid = slow_chunked_upload(cluster_factory, tmp_path)
    # given the owner fixed the plan and some unit is being encoded
    deadline = time.monotonic() + 120
    while True:
        rec = s3_record(c, vid)
        if rec.get("plan") and rec.get("lease"):
            owner = rec["lease"]["holder"]
            break
        assert time.monotonic() < deadline, "the video was never planned"
        time.sleep(0.05)
    wait_unit_in_flight(c, vid, owner="")
    # when the owner dies without a word
    c.kill(owner)
    survivor = next(n for n in c.node_ids if n != owner)
    rec = wait_state(c, survivor, vid, "ready", timeout=240)
    stored = assert_units_committed_once(c, vid)
    # then another node finished the video under a new epoch, reusing the plan
    assert rec["epoch"] == 2 and stored["plan"]["made_by_epoch"] == 1
    assert [h["node"] for h in rec["history"] if h["state"] == "ready"] != [owner]
    # and only units the owner itself held uncommitted were redone
    lines = c.log_lines(owner)
    claimed = {e["unit"] for e in lines if e["event"] == "chunk_claimed" and e.get("video") == vid}
    committed = {e["unit"] for e in lines if e["event"] == "chunk_committed" and e.get("video") == vid}
    redone = {u for u, e in stored["segments_from"]["units"].items() if e > 1}
    assert redone == claimed - committed, (redone, claimed, committed)
    check_stream(c, vid, survivor, fps=25)
