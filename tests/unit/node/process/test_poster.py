"""The poster (node/process/poster.py): where its frame is taken, the argv (pure), and real ffmpeg
writing a JPEG of square pixels from a tiny clip, also from a non-square-pixel source and
when the frame asked for lies past the end; and where playback reads it (layout)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import av
import pytest

from media import make_video
from node.config import MediaLimits
from node.process import ffmpeg_exe
from node.process.errors import TranscodeError
from node.process.poster import POSTER_NAME, make_poster, poster_command, poster_time
from node.records import layout

VID = "a" * 26


@pytest.mark.parametrize("duration,within,at", [
    (5.0, None, 0.5),  # 10% in
    (60.0, None, 5.0),  # at most 5 s in
    (600.0, 4.0, 3.5),  # inside chunk 0, half a second before its end
    (600.0, 0.3, 0.0),
    (None, None, 0.0),  # no known duration: the first frame
    (0.0, None, 0.0),
])
def test_poster_time(duration, within, at):
    assert poster_time(duration, within=within) == at


def test_poster_command_is_fenced_like_every_run():
    cmd = poster_command("/tmp/src", "/tmp/out/poster.jpg", 1.25, container="mov", video_stream=2,
                         formats=("mov", "matroska"), ffmpeg_path="ffmpeg")
    assert cmd[cmd.index("-protocol_whitelist") + 1] == "file"
    assert cmd[cmd.index("-format_whitelist") + 1] == "mov,matroska"
    assert cmd[cmd.index("-f") + 1] == "mov" and cmd.index("-f") < cmd.index("-i")
    assert cmd[cmd.index("-ss") + 1] == "1.250" and cmd.index("-ss") < cmd.index("-i")  # input seeking
    assert cmd[cmd.index("-map") + 1] == "0:2" and cmd[cmd.index("-frames:v") + 1] == "1"
    remote = poster_command("https://s3.example/x?sig", "/tmp/p.jpg", 0.0, ffmpeg_path="ffmpeg")
    assert remote[remote.index("-protocol_whitelist") + 1] == "https,tls,tcp" and "-reconnect" in remote
    with pytest.raises(ValueError):
        poster_command("/tmp/src", "/tmp/p.jpg", 0.0, formats=())


def _jpeg_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"
    with av.open(io.BytesIO(data)) as f:
        cc = f.streams.video[0].codec_context
        return cc.width, cc.height


async def test_a_poster_of_a_tiny_clip(tmp_path):
    src = make_video(tmp_path / "in.mp4", seconds=2, width=160, height=90)
    out = await make_poster(src, tmp_path / "out", poster_time(2.0), container="mov")
    assert out == tmp_path / "out" / POSTER_NAME
    assert _jpeg_size(out) == (160, 90)


async def test_a_frame_past_the_end_falls_back_to_the_first(tmp_path):
    src = make_video(tmp_path / "in.mp4", seconds=1, width=160, height=90)
    out = await make_poster(src, tmp_path / "out", 30.0)  # a duration that overstated the video
    assert _jpeg_size(out) == (160, 90)


async def test_non_square_pixels_come_out_square_and_at_most_720_lines(tmp_path):
    src = tmp_path / "anamorphic.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=160x90:rate=25:duration=1", "-vf", "setsar=2/1",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)],
                   check=True, timeout=60)
    out = await make_poster(src, tmp_path / "a", 0.2)
    assert _jpeg_size(out) == (320, 90)
    tall = make_video(tmp_path / "tall.mp4", seconds=1, width=160, height=1000, audio=False)
    out = await make_poster(tall, tmp_path / "b", 0.2)
    assert _jpeg_size(out) == (116, 720)  # 160 * 720/1000 = 115.2 -> even


async def test_what_is_not_a_video_makes_no_poster(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(Exception) as e:
        await make_poster(junk, tmp_path / "out", 0.0, limits=MediaLimits())
    assert isinstance(e.value, (TranscodeError,)) or type(e.value).__name__ == "UndecodableInput"
    assert not (tmp_path / "out" / POSTER_NAME).exists()


def test_playback_reads_the_poster_where_the_commit_put_it():
    single = {"ready_epoch": 3}
    assert layout.hls_object_key(VID, single, "poster.jpg") == f"videos/{VID}/out/3/poster.jpg"
    chunked = {"ready_epoch": 2, "segments_from": {"chunk_segments": 2, "chunks": 3,
                                                  "units": {"00000": 4, "00001": 1, "00002": 1, "audio": 1}}}
    assert layout.hls_object_key(VID, chunked, "poster.jpg") == f"videos/{VID}/chunks/00000/4/poster.jpg"
    assert layout.valid_output_path("poster.jpg") and not layout.valid_hls_path("poster.jpg")
    assert not layout.valid_output_path("../poster.jpg") and not layout.valid_output_path("x/poster.jpg")


def test_a_video_committed_without_a_poster_has_none_to_serve():
    from node.play import has_output
    assert has_output({"poster": True}, "poster.jpg") and has_output({}, "360p/seg_00000.ts")
    assert not has_output({"poster": False}, "poster.jpg") and not has_output({}, "poster.jpg")
