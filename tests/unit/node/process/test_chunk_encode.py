"""Chunked encoding on real ffmpeg: the stitched renditions are one continuous stream.

Given a 24 s 160x90 source (10 fps, AAC) cut into 4 chunks of 3 two-second segments, each chunk
encoded on its own and the audio once, when the playlists are stitched from the units' outputs,
then ffmpeg decodes every rendition end to end without an error, its duration matches the
source within one frame, and the timestamps run on across every chunk border.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import pytest

from media import make_video
from node.chunks import state
from node.config import Processing, Rendition
from node.process import ffmpeg_exe
from node.process.chunk_assemble import assemble
from node.process.chunk_encode import (AUDIO_NAME, chunk_command, encode_audio, encode_chunk,
                                       plan_video)
from node.process.probe import probe

SECONDS, FPS = 24, 10
LADDER = (Rendition("54p", 54, 80, 32), Rendition("90p", 90, 150, 48))
PROCESSING = Processing(chunked=True, chunk_segments=3, segment_seconds=2, preset="ultrafast")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """Every unit encoded into its own folder, then stitched as playback sees it."""
    base = tmp_path_factory.mktemp("chunked")
    src = make_video(base / "src.mp4", seconds=SECONDS, width=160, height=90, fps=FPS)
    plan = plan_video(probe(src), LADDER, PROCESSING, made_by_epoch=1)
    docs = []
    units = {}
    import trio

    async def encode_all():
        for c in plan.chunks:
            units[c.index] = await encode_chunk(src, base / f"c{c.index}", plan, c)
        units[AUDIO_NAME] = await encode_audio(src, base / "a", plan)

    trio.run(encode_all)
    for key, out in units.items():
        unit = state.AUDIO if key == AUDIO_NAME else state.unit_name(key)
        doc = state.new_chunk("v" * 26, unit, 1, 0.0)
        doc = state.claim(doc, "n1", 1.0, 10.0, max_attempts=3)
        docs.append(state.commit(doc, "n1", 1, 2.0, out.commit_output()))
    files, renditions = assemble(plan, docs)
    stitched = base / "stitched"
    for key, out in units.items():
        root = base / ("a" if key == AUDIO_NAME else f"c{key}")
        for f in out.files:
            if f.suffix == ".ts":
                dest = stitched / f.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
    for rel, text in files.items():
        (stitched / rel).parent.mkdir(parents=True, exist_ok=True)
        (stitched / rel).write_text(text)
    return src, plan, stitched, files, renditions, base


def test_the_plan_cuts_four_chunks_and_the_audio_is_one_unit(encoded):
    _src, plan, _st, files, renditions, _b = encoded
    assert [(c.start, c.segments) for c in plan.chunks] == [(0, 3), (6, 3), (12, 3), (18, 3)]
    assert list(files) == ["audio/index.m3u8", "54p/index.m3u8", "90p/index.m3u8", "master.m3u8"]
    master = files["master.m3u8"]
    assert '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud"' in master and master.count('AUDIO="aud"') == 2
    assert [r["name"] for r in renditions] == ["54p", "90p"]
    # the stitched playlist is the chunks' lists in order, one header, no discontinuity
    media = files["90p/index.m3u8"]
    assert media.count("#EXTINF:2.000000,") == 12 and "DISCONTINUITY" not in media
    assert [ln for ln in media.splitlines() if ln.endswith(".ts")] == [f"seg_{k:05d}.ts" for k in range(12)]


@pytest.mark.parametrize("rendition", ["54p", "90p", "audio"])
def test_ffmpeg_decodes_each_stitched_rendition_without_an_error(encoded, rendition):
    _src, _plan, stitched, *_ = encoded
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error",
                           "-i", str(stitched / rendition / "index.m3u8"), "-f", "null", "-"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.decode().strip() == ""


@pytest.mark.parametrize("rendition", ["54p", "90p"])
def test_video_duration_matches_the_source_within_a_frame_and_borders_are_continuous(encoded, rendition):
    _src, plan, stitched, *_ = encoded
    frame = 1 / FPS
    spans = []
    for seg in sorted((stitched / rendition).glob("seg_*.ts")):
        with av.open(str(seg)) as c:
            times = [f.time for f in c.decode(c.streams.video[0])]
        spans.append((min(times), max(times) + frame, len(times)))
    # every segment k+1 starts where segment k ended (within one frame), chunk borders included
    for k, (a, b) in enumerate(zip(spans, spans[1:])):
        assert abs(b[0] - a[1]) < frame / 2, f"segment {k + 1} starts {b[0] - a[1]:+.4f} s off"
    assert sum(n for *_, n in spans) == SECONDS * FPS
    assert abs((spans[-1][1] - spans[0][0]) - plan.duration) <= frame


def test_audio_is_encoded_once_and_spans_the_source(encoded):
    _src, plan, stitched, *_ = encoded
    ends = []
    for seg in sorted((stitched / AUDIO_NAME).glob("seg_*.ts")):
        with av.open(str(seg)) as c:
            s = c.streams.audio[0]
            pk = [p for p in c.demux(s) if p.pts is not None]
            ends.append((float(pk[0].pts * s.time_base), float((pk[-1].pts + pk[-1].duration) * s.time_base)))
    for a, b in zip(ends, ends[1:]):
        assert abs(b[0] - a[1]) < 1e-6  # packets run on: no gap, no overlap
    assert abs((ends[-1][1] - ends[0][0]) - plan.duration) < 2 * 1024 / 48000  # priming + padding


def test_the_same_chunk_encoded_twice_is_byte_identical(encoded, tmp_path):
    import trio

    src, plan, _st, _f, _r, base = encoded
    again = trio.run(lambda: encode_chunk(src, tmp_path / "again", plan, plan.chunks[1]))
    for f in again.files:
        if f.suffix == ".ts":
            assert f.read_bytes() == (base / "c1" / f.relative_to(tmp_path / "again")).read_bytes()


def test_a_chunk_command_reads_only_its_range():
    # the input is seeked (-ss before -i) and the read bounded; remote sources use http only
    from node.chunks.plan import make_plan

    rungs = [{"name": "90p", "width": 160, "height": 90, "video_kbps": 150, "audio_kbps": 48,
              "maxrate_kbps": 165, "bufsize_kbps": 300, "bandwidth": 1, "average_bandwidth": 1,
              "level": 30}]
    plan = make_plan(duration=24.0, segment_seconds=2, chunk_segments=3, chunked=True,
                     renditions=rungs, has_audio=True, preset="veryfast")
    cmd = chunk_command("http://127.0.0.1:9/b/k?X-Amz-Signature=s", Path("/o"), plan, plan.chunks[2])
    i = cmd.index("-i")
    assert cmd[i - 4:i] == ["-ss", "12.000000", "-t", "7.000000"]
    assert cmd[cmd.index("-protocol_whitelist") + 1] == "http,tcp"
    assert cmd[cmd.index("-output_ts_offset") + 1] == "13.000000"
    assert cmd[cmd.index("-start_number") + 1] == "6"
    assert cmd[cmd.index("-force_key_frames:v:0") + 1] == "0,2,4"
    assert "-an" in cmd and cmd[cmd.index("-threads") + 1] == "1"
