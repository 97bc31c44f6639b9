"""The worker on the user's bad bytes: `failed` at once, no retry, a clean public error.

In-process worker, in-memory object store, the real probe child and the real ffmpeg.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import trio

import media
import storage
from node.config import Config, MediaLimits, NodeSpec, Rendition
from node.process import ffmpeg_exe
from node.process.worker import Worker
from node.records import lifecycle
from node.records.lifecycle import Record
from node.records.store import VideoStore
from test_worker_lease_expiry import uploaded_video

LADDER = (Rendition("64p", 64, 100, 32), Rendition("120p", 120, 200, 48))
# a local path or a URL anywhere in a public message (ASF/WMV is a format name)
LEAK = re.compile(r"(?<![A-Z])/[\w.-]+/|://|Traceback|\n")


def config(media_limits: MediaLimits = MediaLimits()) -> Config:
    return Config(nodes=(NodeSpec("n1", "127.0.0.1", 1, 2),), ladder=LADDER, media=media_limits).local()


def terminal(rec: Record) -> bool:
    return rec["state"] in lifecycle.TERMINAL


async def process(tmp_path: Path, source: bytes, cfg: Config, until=terminal,
                  timeout: float = 90) -> Record:
    """Store ``source`` as an uploaded video, run a worker until ``until(record)``; the record."""
    videos = VideoStore(storage.MemoryStore(), "n1")
    vid = await uploaded_video(videos, source)
    worker = Worker(videos, cfg, "n1", tmp_path / "work")
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            while True:
                rec = (await videos.get(vid)).doc
                if until(rec):
                    break
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    return rec


def assert_failed_at_once(rec: Record, code: str, words: str) -> None:
    assert rec["state"] == "failed", rec
    assert rec["attempts"] == 1 and rec["failures"] == 0  # no retry burned
    assert rec["error"]["code"] == code
    assert words in rec["error"]["message"], rec["error"]
    public = lifecycle.public_view(rec)["error"]["message"]
    assert not LEAK.search(public), public


@pytest.mark.parametrize("make, code, words", [
    (lambda d: media.make_timestamp_gap(d / "gap.mkv", gap=36000), "media_limit",
     "duration 36001 s is over media.max_duration_s (21600 s)"),
    (lambda d: media.make_timestamp_gap(d / "gap.mkv", gap=36000, seekable=False), "media_limit",
     "timestamp span 36001 s is over media.max_duration_s (21600 s)"),
    (lambda d: media.make_huge_png(d / "big.png"), "undecodable_input", "not in a video container we accept"),
    (lambda d: media.make_ffconcat(d / "list", media.make_video(d / "c.mp4", 1, 64, 64), "/etc/passwd"),
     "undecodable_input", "not in a video container we accept"),
    (lambda d: media.make_hls_playlist(d / "pl.m3u8", f"file://{media.make_video(d / 'c.mp4', 1, 64, 64)}",
                                       "http://127.0.0.1:9/seg.ts"), "undecodable_input", "input cannot be decoded"),
    (lambda d: media.make_video(d / "fast.mp4", 1, 64, 64, audio=False, fps=300), "media_limit",
     "frame rate 300 fps is over media.max_fps (240 fps)"),
], ids=["gap-mkv", "gap-mkv-streamed", "huge-png", "ffconcat", "hls", "fps"])
async def test_hostile_input_fails_at_once_with_a_named_reason(tmp_path, make, code, words):
    src = make(tmp_path)
    rec = await process(tmp_path, src.read_bytes(), config())
    assert_failed_at_once(rec, code, words)


async def test_a_source_over_max_duration_fails_at_once(tmp_path):
    src = media.make_video(tmp_path / "long.mp4", seconds=4, width=64, height=64, audio=False)
    rec = await process(tmp_path, src.read_bytes(), config(MediaLimits(max_duration_s=3)))
    assert_failed_at_once(rec, "media_limit", "duration 4 s is over media.max_duration_s (3 s)")


async def test_a_small_video_still_becomes_ready(tmp_path):
    src = media.make_video(tmp_path / "ok.mp4", seconds=2, width=160, height=120)
    rec = await process(tmp_path, src.read_bytes(), config())
    assert rec["state"] == "ready" and rec["attempts"] == 1 and rec["error"] is None
    assert [r["name"] for r in rec["renditions"]] == ["64p", "120p"]


async def test_an_infrastructure_failure_is_retried_and_its_stderr_and_paths_stay_private(tmp_path, monkeypatch):
    # given an ffmpeg that fails the way a full disk does, naming local paths and a traceback
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Error opening output /srv/shoal/tmp/v-1/out/64p/seg_00000.ts: "
                    "No space left on device' >&2\necho 'Traceback (most recent call last):' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    src = media.make_video(tmp_path / "ok.mp4", seconds=1, width=64, height=64, audio=False)
    monkeypatch.setenv("SHOAL_FFMPEG", str(fake))
    ffmpeg_exe.cache_clear()
    try:
        rec = await process(tmp_path, src.read_bytes(), config(),
                            until=lambda r: r["error"] is not None or r["state"] in lifecycle.TERMINAL)
    finally:
        ffmpeg_exe.cache_clear()
    # then the lease is released for a retry, and the record says what failed, not where
    assert rec["state"] == "processing" and rec["lease"] is None and rec["failures"] == 1
    assert rec["error"] == {"code": "transcode_error", "message": "transcoding failed: ffmpeg exited with status 1"}
