"""Test media, generated on the spot with the ffmpeg binary (tiny and fast).

    make_video(path, seconds=4, width=320, height=240, audio=True, fps=25)
    make_audio_only(path, seconds=2)
    make_random_bytes(path, n, seed=0)
    make_truncated_mp4(path)
    make_rotated(path, src, degrees=90)
    make_empty(path)

Each returns the path it wrote. A 4 s 320x240 clip takes ~0.1 s to make.
The video is ffmpeg's ``testsrc2`` pattern (moving, so every frame differs) and
the audio a 440 Hz sine, encoded with x264 ``ultrafast``, a keyframe every
second, AAC audio. ``faststart=False`` leaves the ``moov`` index at the end of
the file, which is what ``make_truncated_mp4`` relies on.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

from node.process import ffmpeg_exe

PathLike = str | os.PathLike[str]


def _run(args: list[str]) -> None:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                           *args], capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed making test media: {proc.stderr.decode()[-2000:]}")


def make_video(path: PathLike, seconds: float = 4, width: int = 320, height: int = 240,
               audio: bool = True, fps: int = 25, *, faststart: bool = True) -> Path:
    """An H.264 (+AAC) MP4 of ``seconds`` of moving test pattern."""
    path = Path(path)
    args = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(fps)]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    if faststart:
        args += ["-movflags", "+faststart"]
    _run(args + [str(path)])
    return path


def make_audio_only(path: PathLike, seconds: float = 2) -> Path:
    """An AAC-in-MP4 (.m4a) file with no video stream."""
    path = Path(path)
    _run(["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
          "-c:a", "aac", "-b:a", "64k", "-f", "mp4", str(path)])
    return path


def make_random_bytes(path: PathLike, n: int = 64 * 1024, seed: int = 0) -> Path:
    """``n`` bytes from a seeded RNG: never a valid media file in practice."""
    path = Path(path)
    path.write_bytes(random.Random(seed).randbytes(n))
    return path


def make_truncated_mp4(path: PathLike, seconds: float = 2) -> Path:
    """The first half of an MP4 whose ``moov`` index sits at the end: the index is cut off."""
    path = Path(path)
    make_video(path, seconds=seconds, faststart=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_rotated(path: PathLike, src: PathLike, degrees: int = 90) -> Path:
    """``src`` remuxed with a display-matrix rotation, as phones write portrait video."""
    path = Path(path)
    _run(["-display_rotation:v:0", str(degrees), "-i", str(src), "-c", "copy", str(path)])
    return path


def make_empty(path: PathLike) -> Path:
    path = Path(path)
    path.write_bytes(b"")
    return path
