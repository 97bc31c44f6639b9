"""Test media, generated on the spot with the ffmpeg binary (tiny and fast).

    make_video(path, seconds=4, width=320, height=240, audio=True, fps=25)
    make_audio_only(path, seconds=2)
    make_random_bytes(path, n, seed=0)
    make_truncated_mp4(path)
    make_rotated(path, src, degrees=90)
    make_empty(path)

Hostile media (docs/security.md "Media: resource limits and what ffmpeg may open"):

    make_timestamp_gap(path, gap=36000, fmt="matroska", seekable=True)  two frames `gap` s apart
    make_huge_png(path, width=16000, height=16000)   a ~40 KB PNG that decodes to 256 Mpx
    make_ffconcat(path, *targets)                    an ffconcat list naming local files
    make_hls_playlist(path, *uris)                   a VOD playlist naming file:// and http:// URIs

Each returns the path it wrote. A 4 s 320x240 clip takes ~0.1 s to make.
The video is ffmpeg's ``testsrc2`` pattern (moving, so every frame differs) and
the audio a 440 Hz sine, encoded with x264 ``ultrafast``, a keyframe every
second, AAC audio. ``faststart=False`` leaves the ``moov`` index at the end of
the file, which is what ``make_truncated_mp4`` relies on.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import zlib
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


def make_timestamp_gap(path: PathLike, gap: float = 36000, fmt: str = "matroska", *,
                       seekable: bool = True) -> Path:
    """Two 64x64 H.264 frames ``gap`` seconds apart (a few KB). ``seekable=False`` writes the
    file through a pipe, so Matroska gets no Duration and no Cues: only the timestamps tell."""
    path = Path(path)
    args = ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=1", "-frames:v", "2",
            "-vf", f"setpts=N*{gap:g}/TB", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", "-f", fmt]
    if seekable:
        _run(args + [str(path)])
        return path
    with open(path, "wb") as out:
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args,
                               "pipe:1"], stdout=out, stderr=subprocess.PIPE, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed making test media: {proc.stderr.decode()[-2000:]}")
    return path


def make_huge_png(path: PathLike, width: int = 16000, height: int = 16000) -> Path:
    """A valid black 1-bit greyscale PNG, written directly (never decoded here): ~40 KB on disk,
    ``width * height`` pixels once decoded (1 GB as RGBA at the default size)."""
    path = Path(path)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte "none", then the packed bits
    idat = zlib.compress(row * height, 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


def make_ffconcat(path: PathLike, *targets: PathLike) -> Path:
    """An ffconcat list: the concat demuxer would read each named local file."""
    path = Path(path)
    path.write_text("ffconcat version 1.0\n" + "".join(f"file '{t}'\n" for t in targets))
    return path


def make_hls_playlist(path: PathLike, *uris: str) -> Path:
    """A finished HLS media playlist whose segments are ``uris`` (file://, http://, ...)."""
    path = Path(path)
    body = "".join(f"#EXTINF:2.0,\n{u}\n" for u in uris)
    path.write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                    "#EXT-X-PLAYLIST-TYPE:VOD\n" + body + "#EXT-X-ENDLIST\n")
    return path
