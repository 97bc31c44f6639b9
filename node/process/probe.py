"""Probe an upload: what the file holds, after decoding its first video frame (PyAV).

``probe(path) -> Probe`` is synchronous (call it via ``trio.to_thread.run_sync``, or in
a child process: ``node.process.probe_isolated``).  It is where a user's file is judged:
anything that is not a video we can transcode raises ``UndecodableInput`` with a
sentence for the user (the video becomes `failed`, no retry), and PyAV's errors are
translated here and nowhere else.  What it refuses:

* an empty file, a file PyAV cannot open (a truncated MP4 is named as such: the
  ``moov`` index is missing, read from the top-level ISO-BMFF boxes);
* a bare video elementary stream with no container (``RAW_VIDEO_DEMUXERS``: their
  probes accept short runs of random bytes);
* no video stream (only audio, or only cover art), an unsupported codec, no video
  frame decodable within ``PROBE_PACKET_BUDGET`` packets, a picture under 2x2.

Width and height are the display size, after the sample aspect ratio and the
rotation of the display matrix.  ``probe`` takes 5-20 ms.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from node.process.errors import UndecodableInput

PROBE_PACKET_BUDGET = 2000  # demuxed packets we allow before giving up on a first frame
# libavformat's demuxers of bare video elementary streams (no container): their probes accept
# short runs of random bytes (1 in ~2,000 random 8 KiB files reads as H.263, some with a
# "decodable" frame; the 30-minute chaos run turned one random file into a "ready" video).
# A video platform's uploads come in containers (MP4, MOV, MKV, WebM, AVI, MPEG-TS, ...).
RAW_VIDEO_DEMUXERS = frozenset({
    "h261", "h263", "h264", "hevc", "vvc", "evc", "m4v", "mpegvideo", "cavsvideo", "avs2", "avs3",
    "dirac", "dnxhd", "vc1", "obu", "mjpeg", "mjpeg_2000", "ingenient", "rawvideo"})


@dataclass(frozen=True)
class Probe:
    duration: float | None  # seconds; None when the container does not say
    width: int  # display width: after sample aspect ratio and rotation
    height: int  # display height
    fps: float  # average frame rate; 0.0 when unknown
    has_audio: bool
    video_codec: str  # ffmpeg decoder name, e.g. "h264"
    video_stream: int = 0  # absolute stream index of the video we use
    audio_stream: int | None = None  # absolute stream index of the audio we use
    rotation: int = 0  # degrees from the display matrix


def probe(path: str | os.PathLike[str]) -> Probe:
    """What the file holds, after decoding its first video frame.

    Raises UndecodableInput (with a reason for the user) for an empty file, a file
    PyAV cannot open, no video stream, or no decodable video frame. OSError (file
    missing, unreadable) propagates: that is our fault, not the user's.
    """
    import av  # imported here: PyAV is slow to import and only workers need it

    path = Path(path)
    if path.stat().st_size == 0:
        raise UndecodableInput("the file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except OSError:  # missing, unreadable, I/O error: ours, not the user's (PyAV's are OSErrors)
        raise
    except (av.error.FFmpegError, EOFError, UnicodeDecodeError) as e:
        raise UndecodableInput(_open_failure_reason(path, e)) from None
    with container:
        names = set((container.format.name or "").split(","))
        if names & RAW_VIDEO_DEMUXERS:
            raise UndecodableInput(
                f"the file is not in a video container (it reads only as a bare {container.format.name} "
                "stream, as random data can); upload MP4, MOV, MKV, WebM, AVI, MPEG-TS or similar")
        videos = [s for s in container.streams.video
                  if not (s.disposition & av.stream.Disposition.attached_pic)]
        audios = [s for s in container.streams.audio if s.codec_context is not None]
        if not videos:
            if audios:
                raise UndecodableInput("the file has audio but no video stream")
            raise UndecodableInput("the file has no video stream")
        video = videos[0]
        if video.codec_context is None:
            raise UndecodableInput(f"unsupported video codec in stream {video.index}")
        frame = _first_frame(container, video)
        sar = video.codec_context.sample_aspect_ratio or Fraction(1)
        width = max(1, round(frame.width * float(sar))) if sar > 0 else frame.width
        height = frame.height
        rotation = int(round(getattr(frame, "rotation", 0) or 0))
        if rotation % 180 == 90:
            width, height = height, width
        if width < 2 or height < 2:
            raise UndecodableInput(f"the video is too small to encode ({width}x{height})")
        rate = video.average_rate or video.guessed_rate
        fps = float(rate) if rate and 0 < float(rate) <= 1000 else 0.0
        if container.duration is not None and container.duration > 0:
            duration: float | None = container.duration / 1_000_000
        elif video.duration and video.time_base:
            duration = float(video.duration * video.time_base)
        else:
            duration = None
        return Probe(duration=duration, width=width, height=height, fps=fps,
                     has_audio=bool(audios), video_codec=video.codec_context.name,
                     video_stream=video.index,
                     audio_stream=audios[0].index if audios else None, rotation=rotation)


def _first_frame(container, video):
    import av

    last_error = None
    try:
        for n, packet in enumerate(container.demux(video)):
            if n >= PROBE_PACKET_BUDGET:
                break
            try:
                for frame in packet.decode():
                    return frame
            except (av.error.FFmpegError, ValueError) as e:  # a damaged packet: try the next
                last_error = e
    except (av.error.FFmpegError, EOFError) as e:
        last_error = e
    detail = f" ({_ffmpeg_message(last_error)})" if last_error else ""
    raise UndecodableInput(f"no decodable video frame in the {video.codec_context.name} "
                           f"stream{detail}")


def _ffmpeg_message(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _open_failure_reason(path: Path, e: BaseException) -> str:
    boxes = _mp4_boxes(path)
    if boxes and boxes[0][0] == b"ftyp":
        if not any(t == b"moov" for t, _ in boxes):
            return ("truncated or damaged MP4: the 'moov' index is missing "
                    "(the upload may have been cut short)")
        return f"damaged MP4 ({_ffmpeg_message(e)})"
    return f"not a video file we can read ({_ffmpeg_message(e)})"


def _mp4_boxes(path: Path, limit: int = 64) -> list[tuple[bytes, bool]]:
    """Top-level ISO-BMFF boxes: (type, complete?). [] if the file does not look like one."""
    out: list[tuple[bytes, bool]] = []
    size_total = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size_total and len(out) < limit:
            f.seek(pos)
            size, kind = struct.unpack(">I4s", f.read(8))
            if not kind.isalnum() and kind not in (b"ftyp", b"moov", b"mdat", b"free"):
                return out if out else []
            if size == 1:
                (size,) = struct.unpack(">Q", f.read(8))
            elif size == 0:
                size = size_total - pos
            if size < 8:
                return out
            out.append((kind, pos + size <= size_total))
            pos += size
    return out
