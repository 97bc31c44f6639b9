"""Media limits and what ffmpeg may open (docs/security.md "Media: resource limits ...").

Pure parts (limit checks, run bounds, the ``media:`` section, public messages) are table
tests; probe and transcode run on hostile files made by tests/media.py with the real PyAV
and the real ffmpeg. Each hostile file fails at once, naming the limit or the reason, and no
error holds a path or a traceback.
"""

from __future__ import annotations

import math
import os
import stat
import time
from pathlib import Path

import pytest

import media
import storage
from node.config import Config, ConfigError, GiB, MediaLimits, MiB, Rendition
from node.process import (MediaLimitExceeded, Probe, TranscodeError, UndecodableInput, classify,
                          plan_ladder, probe, probe_isolated, public_message, run_bounds, transcode)
from node.process.limits import check_duration, check_fps, check_frame_size, check_frames

LADDER = (Rendition("64p", 64, 100, 32),)
DEFAULT = MediaLimits()
NODES = [{"id": "n1", "host": "127.0.0.1", "http_port": 1, "gossip_port": 2}]


# ---- the `media:` section ---------------------------------------------------------------------------
def test_media_section_defaults_let_4k_and_8k_sources_pass():
    cfg = Config.from_dict({"nodes": NODES})
    assert cfg.media == DEFAULT
    assert DEFAULT.max_duration_s == 21600 and DEFAULT.max_fps == 240
    assert DEFAULT.frame_limit == 21600 * 240
    for w, h in [(3840, 2160), (4096, 2160), (7680, 4320), (8192, 4320), (4320, 7680)]:
        check_frame_size(w, h, DEFAULT)  # does not raise
    assert DEFAULT.probe_memory == 1 * GiB and DEFAULT.ffmpeg_memory == 2 * GiB
    assert {"hls", "concat", "image2", "png_pipe", "dash"}.isdisjoint(DEFAULT.formats)


def test_media_section_parses_sizes_and_format_lists():
    cfg = Config.from_dict({"nodes": NODES, "media": {
        "max_duration_s": 60, "ffmpeg_memory": "1536 MiB", "probe_memory": "256 MiB",
        "formats": ["mov", "matroska"], "max_frames": 1000}})
    m = cfg.media
    assert (m.max_duration_s, m.ffmpeg_memory, m.probe_memory) == (60, 1536 * MiB, 256 * MiB)
    assert m.formats == ("mov", "matroska") and m.frame_limit == 1000
    assert Config.from_dict({"nodes": NODES, "media": {"formats": "mov, mpegts"}}).media.formats == (
        "mov", "mpegts")


@pytest.mark.parametrize("section, words", [
    ({"max_duration": 60}, "unknown key 'max_duration'"),
    ({"max_duration_s": 0}, "media.max_duration_s: must be a positive number"),
    ({"max_fps": -1}, "media.max_fps: must be a positive number"),
    ({"ffmpeg_memory": "lots"}, "not a size"),
    ({"formats": []}, "media.formats"),
    ({"formats": ["mov", "file:/etc"]}, "media.formats"),
    ({"max_frames": 0}, "media.max_frames"),
])
def test_media_section_rejects_limits_that_cannot_work(section, words):
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"nodes": NODES, "media": section})
    assert words in str(e.value)


# ---- the checks and the run bounds (pure) -------------------------------------------------------------
@pytest.mark.parametrize("check, args, limit, message", [
    (check_duration, (36001.4,), "max_duration_s", "duration 36001 s is over media.max_duration_s (21600 s)"),
    (check_frame_size, (8200, 16), "max_width", "frame width 8200 px (8200x16) is over media.max_width (8192 px)"),
    (check_frame_size, (16, 8200), "max_height", "frame height 8200 px (16x8200) is over media.max_height (8192 px)"),
    (check_frame_size, (6100, 6100), "max_pixels",
     "frame size 6100x6100 (37210000 pixels) is over media.max_pixels (36000000)"),
    (check_fps, (300.0,), "max_fps", "frame rate 300 fps is over media.max_fps (240 fps)"),
    (check_fps, (240.5,), "max_fps", "frame rate 240 fps is over media.max_fps (240 fps)"),
    (check_frames, (5_184_001,), "max_frames", "5184001 video frames is over media.max_frames (5184000)"),
])
def test_a_source_over_a_limit_is_refused_naming_the_limit(check, args, limit, message):
    with pytest.raises(MediaLimitExceeded) as e:
        check(*args, DEFAULT)
    assert (e.value.limit, e.value.reason) == (limit, message)


@pytest.mark.parametrize("check, args", [
    (check_duration, (21600.0,)), (check_frame_size, (8192, 4320)), (check_fps, (240.0,)),
    (check_frames, (5_184_000,)),
])
def test_a_source_at_a_limit_passes(check, args):
    check(*args, DEFAULT)


@pytest.mark.parametrize("duration, read, frames, wall", [
    (0.0, 10.0, 2400, 60.0),
    (4.0, 14.0, 3360, 100.0),
    (600.0, 630.0, 151_200, 6060.0),
    (21600.0, 21600.0, 5_184_000, 216_060.0),  # the read limit never passes max_duration_s
])
def test_run_bounds(duration, read, frames, wall):
    b = run_bounds(duration, DEFAULT)
    assert (b.read_seconds, b.max_frames, b.wall_seconds, b.memory_bytes) == (read, frames, wall, 2 * GiB)
    assert b.max_frames == min(DEFAULT.frame_limit, math.ceil(read * DEFAULT.max_fps))


# ---- what users see (node/process/failure.py) -----------------------------------------------------------
@pytest.mark.parametrize("err, code, retry, message", [
    (UndecodableInput("the file has no video stream"), "undecodable_input", False,
     "input cannot be decoded: the file has no video stream"),
    (MediaLimitExceeded("max_fps", "frame rate 300 fps is over media.max_fps (240 fps)"), "media_limit", False,
     "frame rate 300 fps is over media.max_fps (240 fps)"),
    (TranscodeError("ffmpeg exited with status 1", "Error opening input file /var/lib/shoal/tmp/x/source.\n"),
     "transcode_error", True, "transcoding failed: ffmpeg exited with status 1"),
    (FileNotFoundError(2, "No such file or directory", "/var/lib/shoal/tmp/x/source"), "io_error", True,
     "local I/O error (No such file or directory)"),
    (storage.StorageUnavailable("get videos/x/source: http://10.0.0.5:8333/shoal refused"), "storage_error",
     True, "storage error (StorageUnavailable); will retry"),
])
def test_classify_decides_fail_or_retry_and_the_public_message(err, code, retry, message):
    f = classify(err)
    assert (f.code, f.retry, f.message) == (code, retry, message)


@pytest.mark.parametrize("text, clean", [
    ("not a video (Invalid data found): '/tmp/shoal/n1/tmp/abc-1/source'", "not a video (Invalid data found): '<path>'"),
    ("probe failed: Traceback (most recent call last):\n  File \"/x/y.py\", line 3\nValueError", "probe failed:"),
    ("cannot open file:///etc/passwd or http://127.0.0.1:9/x.ts", "cannot open <url> or <url>"),
    ("a\nmulti-line\r\n\tmessage", "a multi-line message"),
    ("duration 36001 s is over media.max_duration_s (21600 s)", "duration 36001 s is over media.max_duration_s (21600 s)"),
    ("x" * 400, "x" * 297 + "..."),
    ("", "unknown error"),
])
def test_public_message_holds_no_path_url_traceback_or_newline(text, clean):
    assert public_message(text) == clean


# ---- probe: hostile files ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, seekable, what", [
    ("matroska", True, "duration"),  # the header says 36001 s
    ("matroska", False, "timestamp span"),  # no Duration, no Cues: only the timestamps tell
    ("mpegts", True, "timestamp span"),  # the header's estimate says 0.5 s
], ids=["mkv", "mkv-streamed", "mpegts"])
def test_two_frames_ten_hours_apart_are_refused_from_their_timestamps(tmp_path, fmt, seekable, what):
    # given a few KB holding two frames 36000 s apart
    path = media.make_timestamp_gap(tmp_path / "gap", gap=36000, fmt=fmt, seekable=seekable)
    assert path.stat().st_size < 20_000
    # when probed, then it is over max_duration_s at once (nothing between the frames is decoded)
    t0 = time.perf_counter()
    with pytest.raises(MediaLimitExceeded) as e:
        probe(path)
    assert time.perf_counter() - t0 < 5
    assert e.value.limit == "max_duration_s"
    assert e.value.reason == f"{what} 36001 s is over media.max_duration_s (21600 s)"


def test_a_huge_png_is_refused_before_it_is_decoded(tmp_path):
    path = media.make_huge_png(tmp_path / "big.png", 16000, 16000)  # 256 Mpx, ~140 KB
    with pytest.raises(UndecodableInput) as e:
        probe(path)
    assert "not in a video container we accept" in e.value.reason


def test_an_ffconcat_list_naming_local_files_is_refused_as_the_users_input(tmp_path):
    clip = media.make_video(tmp_path / "clip.mp4", seconds=1, width=64, height=64)
    path = media.make_ffconcat(tmp_path / "source", clip, "/etc/passwd")
    with pytest.raises(UndecodableInput) as e:  # not PermissionError (an OSError: "ours", retried)
        probe(path)
    assert "not in a video container we accept" in e.value.reason
    assert "/" not in e.value.reason.replace("ASF/WMV", "")


@pytest.mark.parametrize("name", ["source", "playlist.m3u8"])
def test_an_hls_playlist_naming_file_and_http_urls_is_refused(tmp_path, name):
    clip = media.make_video(tmp_path / "clip.mp4", seconds=1, width=64, height=64)
    path = media.make_hls_playlist(tmp_path / name, f"file://{clip}", "http://127.0.0.1:9/seg.ts")
    with pytest.raises(UndecodableInput) as e:
        probe(path)
    assert "/" not in e.value.reason.replace("ASF/WMV", "")


@pytest.mark.parametrize("make, limits, limit, message", [
    (lambda p: media.make_video(p, seconds=4, width=64, height=64, audio=False), MediaLimits(max_duration_s=2),
     "max_duration_s", "duration 4 s is over media.max_duration_s (2 s)"),
    (lambda p: media.make_video(p, seconds=1, width=64, height=64, audio=False, fps=300), DEFAULT,
     "max_fps", "frame rate 300 fps is over media.max_fps (240 fps)"),
    (lambda p: media.make_video(p, seconds=0.4, width=8200, height=16, audio=False, fps=5), DEFAULT,
     "max_width", "frame width 8200 px (8200x16) is over media.max_width (8192 px)"),
    (lambda p: media.make_video(p, seconds=1, width=320, height=240, audio=False), MediaLimits(max_pixels=320 * 200),
     "max_pixels", "frame size 320x240 (76800 pixels) is over media.max_pixels (64000)"),
    (lambda p: media.make_video(p, seconds=4, width=64, height=64, audio=False), MediaLimits(max_frames=50),
     "max_frames", "100 video frames is over media.max_frames (50)"),
], ids=["duration", "fps", "width", "pixels", "frames"])
def test_probe_refuses_a_source_over_a_limit(tmp_path, make, limits, limit, message):
    path = make(tmp_path / "in.mp4")
    with pytest.raises(MediaLimitExceeded) as e:
        probe(path, limits)
    assert (e.value.limit, e.value.reason) == (limit, message)


async def test_the_probe_child_gives_the_same_verdicts_and_never_an_oserror_for_the_users_bytes(tmp_path):
    gap = media.make_timestamp_gap(tmp_path / "gap.mkv")
    with pytest.raises(MediaLimitExceeded) as e:
        await probe_isolated(gap)
    assert e.value.limit == "max_duration_s" and "36001 s" in e.value.reason
    clip = media.make_video(tmp_path / "clip.mp4", seconds=1, width=64, height=64)
    concat = media.make_ffconcat(tmp_path / "source", clip, "/etc/passwd")
    with pytest.raises(UndecodableInput):
        await probe_isolated(concat)
    big = media.make_huge_png(tmp_path / "big.png")
    with pytest.raises(UndecodableInput):
        await probe_isolated(big)
    good = await probe_isolated(clip)
    assert (good.container, good.width, good.frames) == ("mov", 64, 25)


# ---- transcode: the bounds ffmpeg runs under --------------------------------------------------------------
def _lying(duration: float) -> Probe:
    return Probe(duration=duration, width=64, height=64, fps=1.0, has_audio=False, video_codec="h264",
                 container="matroska")


async def _transcode(src: Path, out: Path, p: Probe, limits: MediaLimits = DEFAULT, ffmpeg: str | None = None):
    return await transcode(src, out, plan_ladder(p, LADDER), segment_seconds=2, preset="ultrafast",
                           threads=1, has_audio=p.has_audio, duration=p.duration, limits=limits,
                           input_format=p.container or None, ffmpeg=ffmpeg)


async def test_ffmpeg_reads_nothing_past_the_read_limit_of_a_file_whose_header_lies(tmp_path):
    # given the ten-hour-gap file, and a probe that (as if the header lied) says 2 s
    src = media.make_timestamp_gap(tmp_path / "gap.mkv")
    t0 = time.perf_counter()
    files = await _transcode(src, tmp_path / "out", _lying(2.0))
    # then ffmpeg stops at the read limit (12 s) instead of encoding ten hours of frames
    assert time.perf_counter() - t0 < 30
    playlist = (tmp_path / "out" / "64p" / "index.m3u8").read_text()
    total = sum(float(line[8:].rstrip(",")) for line in playlist.splitlines() if line.startswith("#EXTINF:"))
    assert total <= run_bounds(2.0, DEFAULT).read_seconds + 2
    assert len([f for f in files if f.suffix == ".ts"]) <= 7


async def test_ffmpeg_refuses_an_ffconcat_list_itself_as_the_users_input(tmp_path):
    clip = media.make_video(tmp_path / "clip.mp4", seconds=1, width=64, height=64, audio=False)
    concat = media.make_ffconcat(tmp_path / "source", clip)
    p = Probe(duration=1.0, width=64, height=64, fps=25.0, has_audio=False, video_codec="h264")
    with pytest.raises(UndecodableInput) as e:  # format_whitelist: never TranscodeError (retried)
        await _transcode(concat, tmp_path / "out", p)
    assert e.value.reason == "ffmpeg could not read the file (not on whitelist)"


def _fake_ffmpeg(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-ffmpeg"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


async def test_ffmpeg_is_killed_at_its_wall_clock_deadline(tmp_path):
    pidfile = tmp_path / "pid"
    fake = _fake_ffmpeg(tmp_path, f"echo $$ > {pidfile}\nexec sleep 60\n")
    limits = MediaLimits(wall_time_factor=0.5, wall_time_base_s=1.0)
    t0 = time.perf_counter()
    with pytest.raises(MediaLimitExceeded) as e:
        await _transcode(tmp_path / "in.mkv", tmp_path / "out", _lying(1.0), limits, ffmpeg=fake)
    assert time.perf_counter() - t0 < 10
    assert e.value.limit == "wall_time_factor"
    assert e.value.reason == ("transcoding took longer than 1.5 s: media.wall_time_factor (0.5) x "
                              "duration 1 s + media.wall_time_base_s (1 s)")
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(pidfile.read_text()), 0)


async def test_ffmpeg_runs_under_rlimit_data_and_a_failed_allocation_is_a_media_limit(tmp_path):
    seen = tmp_path / "ulimit"
    fake = _fake_ffmpeg(tmp_path, f"ulimit -d > {seen}\n"
                                  "echo 'x264 [error]: malloc of size 5371264 failed' >&2\nexit 187\n")
    limits = MediaLimits(ffmpeg_memory=768 * MiB)
    with pytest.raises(MediaLimitExceeded) as e:
        await _transcode(tmp_path / "in.mkv", tmp_path / "out", _lying(1.0), limits, ffmpeg=fake)
    assert int(seen.read_text()) * 1024 == 768 * MiB  # `ulimit -d` says KiB
    assert (e.value.limit, e.value.reason) == (
        "ffmpeg_memory", "transcoding needed more memory than media.ffmpeg_memory (768 MiB)")


async def test_any_other_ffmpeg_failure_is_retried_and_its_stderr_stays_out_of_the_message(tmp_path):
    fake = _fake_ffmpeg(tmp_path, "echo 'Error opening output /srv/shoal/tmp/x/out/64p/index.m3u8' >&2\nexit 1\n")
    with pytest.raises(TranscodeError) as e:
        await _transcode(tmp_path / "in.mkv", tmp_path / "out", _lying(1.0), ffmpeg=fake)
    assert "/srv/shoal" in e.value.stderr_tail  # kept for the log
    assert classify(e.value).message == "transcoding failed: ffmpeg exited with status 1"


async def test_ffmpeg_refusing_to_open_the_input_is_the_users_file_not_a_retry(tmp_path):
    # given bytes the probe accepted but ffmpeg cannot open as the named demuxer
    junk = media.make_random_bytes(tmp_path / "source", 4096)
    p = Probe(duration=1.0, width=64, height=64, fps=25.0, has_audio=False, video_codec="h264",
              container="matroska")
    with pytest.raises(UndecodableInput) as e:
        await _transcode(junk, tmp_path / "out", p)
    assert e.value.reason == "ffmpeg could not read the file (invalid data)"
