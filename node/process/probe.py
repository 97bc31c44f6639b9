"""Probe an upload: what the file holds, after decoding its first video frame (PyAV).

``probe(path, limits) -> Probe`` is synchronous (call it in a child process:
``node.process.probe_isolated``, which also bounds its memory and time).  It is where a user's
file is judged: anything that is not a video we can transcode raises ``UndecodableInput``, and
anything over a media limit ``MediaLimitExceeded``, each with a sentence for the user (the video
becomes `failed`, no retry).  PyAV's errors are translated here and nowhere else: once the file
is known to be readable by us, every error PyAV raises is the file's, never ours.  What it refuses:

* an empty file; a container format not in ``media.formats`` (PyAV opens with
  ``format_whitelist`` and ``protocol_whitelist=file``, so a concat list, an HLS/DASH playlist,
  an image or a bare elementary stream is refused before any of it is read or decoded, and no
  other file or URL is ever opened); a file PyAV cannot open (a truncated MP4 is named as such:
  the ``moov`` index is missing, read from the top-level ISO-BMFF boxes);
* no video stream (only audio, or only cover art), an unsupported codec, no video frame
  decodable within ``PROBE_PACKET_BUDGET`` packets, a picture under 2x2;
* over a limit, before the first frame is decoded: coded frame size, average frame rate,
  header duration, header frame count; after it: the display size, and the *timestamp span*
  (the last packet's end, found by seeking to the end and demuxing at most
  ``SPAN_PACKET_BUDGET`` packets, minus the start), so two frames ten hours apart are caught
  whatever the header says, without decoding anything between them.

Width and height are the display size, after the sample aspect ratio and the rotation of the
display matrix; ``duration`` is the larger of the header's and the timestamp span.
``probe`` takes 5-20 ms.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from node.config import MediaLimits
from node.process.errors import MediaLimitExceeded, UndecodableInput
from node.process.limits import check_duration, check_fps, check_frame_size, check_frames, size

PROBE_PACKET_BUDGET = 2000  # demuxed packets we allow before giving up on a first frame
SPAN_PACKET_BUDGET = 20_000  # packets demuxed after seeking to the end, to find the last timestamp
SEEK_TO_END_US = 1 << 62  # "the end": seek backward from here to the last keyframe
# libavformat's demuxers of bare video elementary streams (no container): their probes accept
# short runs of random bytes (1 in ~2,000 random 8 KiB files reads as H.263, some with a
# "decodable" frame; the 30-minute chaos run turned one random file into a "ready" video).
# None is in the default media.formats; kept as a second line should a config list one.
RAW_VIDEO_DEMUXERS = frozenset({
    "h261", "h263", "h264", "hevc", "vvc", "evc", "m4v", "mpegvideo", "cavsvideo", "avs2", "avs3",
    "dirac", "dnxhd", "vc1", "obu", "mjpeg", "mjpeg_2000", "ingenient", "rawvideo"})
NOT_ACCEPTED = ("the file is not in a video container we accept (MP4, MOV, MKV, WebM, AVI, MPEG-TS, "
                "FLV, Ogg, MPEG-PS, ASF/WMV or MXF; playlists, concat lists, images and bare "
                "streams are refused)")


@dataclass(frozen=True)
class Probe:
    duration: float | None  # seconds: max(header, timestamp span); None only for hand-made Probes
    width: int  # display width: after sample aspect ratio and rotation
    height: int  # display height
    fps: float  # average frame rate; 0.0 when unknown
    has_audio: bool
    video_codec: str  # ffmpeg decoder name, e.g. "h264"
    video_stream: int = 0  # absolute stream index of the video we use
    audio_stream: int | None = None  # absolute stream index of the audio we use
    rotation: int = 0  # degrees from the display matrix
    container: str = ""  # the demuxer that read it (first of its names, e.g. "mov"): ffmpeg's -f
    frames: int = 0  # video frames: the header's count, else duration * fps


def probe(path: str | os.PathLike[str], limits: MediaLimits = MediaLimits()) -> Probe:
    """What the file holds, after decoding its first video frame.

    Raises UndecodableInput (with a reason for the user) for an empty file, a format not
    accepted, a file PyAV cannot open, no video stream, or no decodable video frame;
    MediaLimitExceeded for a file over ``limits``. OSError (file missing, unreadable by us)
    propagates: that is our fault, not the user's.
    """
    import av  # imported here: PyAV is slow to import and only workers need it

    path = Path(path)
    if path.stat().st_size == 0:
        raise UndecodableInput("the file is empty (0 bytes)")
    with open(path, "rb"):  # readable by us: from here on an error is the file's
        pass
    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(limits.formats)}
    try:
        container = av.open(str(path), mode="r", options=options)
    except MemoryError:  # av.error.MemoryError (ENOMEM) too: under the child's RLIMIT_DATA
        raise _probe_memory(limits) from None
    except av.error.ArgumentError as e:  # EINVAL: "Format not on whitelist" (or a bad header)
        if _mp4_boxes(path)[:1] and _mp4_boxes(path)[0][0] == b"ftyp":
            raise UndecodableInput(_open_failure_reason(path, e)) from None
        raise UndecodableInput(NOT_ACCEPTED) from None
    except (av.error.FFmpegError, EOFError, UnicodeDecodeError, ValueError) as e:
        raise UndecodableInput(_open_failure_reason(path, e)) from None
    try:
        with container:
            return _judge(av, container, limits)
    except MemoryError:
        raise _probe_memory(limits) from None


def _judge(av, container, limits: MediaLimits) -> Probe:
    names = (container.format.name or "").split(",")
    if not set(names) & set(limits.formats):  # second line behind format_whitelist
        raise UndecodableInput(NOT_ACCEPTED)
    if set(names) & RAW_VIDEO_DEMUXERS:
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
    cc = video.codec_context
    if cc is None:
        raise UndecodableInput(f"unsupported video codec in stream {video.index}")
    # Limits the headers can tell, before a frame is decoded.
    check_frame_size(cc.width or 0, cc.height or 0, limits)
    average = float(video.average_rate) if video.average_rate else 0.0
    check_fps(average, limits)
    header_duration = _header_duration(container, video)
    if header_duration is not None:
        check_duration(header_duration, limits)
    if video.frames:
        check_frames(video.frames, limits)
    frame = _first_frame(container, video)
    sar = cc.sample_aspect_ratio or Fraction(1)
    width = max(1, round(frame.width * float(sar))) if sar > 0 else frame.width
    height = frame.height
    rotation = int(round(getattr(frame, "rotation", 0) or 0))
    if rotation % 180 == 90:
        width, height = height, width
    if width < 2 or height < 2:
        raise UndecodableInput(f"the video is too small to encode ({width}x{height})")
    check_frame_size(frame.width, frame.height, limits)
    check_frame_size(width, height, limits)
    rate = video.average_rate or video.guessed_rate
    fps = float(rate) if rate and 0 < float(rate) <= 1000 else 0.0
    # The timestamps: the last packet's end, whatever the header says.
    start = container.start_time / 1_000_000 if container.start_time is not None else 0.0
    end = _last_timestamp(av, container)
    span = end - start if end is not None and end > start else None
    if span is not None:
        check_duration(span, limits, what="timestamp span")
    known = [d for d in (header_duration, span) if d is not None]
    if not known:
        raise UndecodableInput("the file has no timestamps to tell how long it is")
    duration = max(known)
    frames = video.frames or round(duration * fps)
    check_frames(frames, limits)
    return Probe(duration=duration, width=width, height=height, fps=fps,
                 has_audio=bool(audios), video_codec=cc.name, video_stream=video.index,
                 audio_stream=audios[0].index if audios else None, rotation=rotation,
                 container=names[0], frames=frames)


def _header_duration(container, video) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    if video.duration and video.time_base:
        return float(video.duration * video.time_base)
    return None


def _last_timestamp(av, container) -> float | None:
    """End (seconds) of the last packet: seek to the end, demux at most SPAN_PACKET_BUDGET."""
    try:
        container.seek(SEEK_TO_END_US, backward=True, any_frame=False)
    except av.error.FFmpegError:
        pass  # not seekable: what follows still sees the packets after the first frame
    end = None
    try:
        for n, packet in enumerate(container.demux()):
            if n >= SPAN_PACKET_BUDGET:
                break
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or packet.time_base is None:
                continue
            t = float((ts + (packet.duration or 0)) * packet.time_base)
            end = t if end is None else max(end, t)
    except (av.error.FFmpegError, EOFError, ValueError):
        pass  # a damaged tail: the span is what was read
    return end


def _probe_memory(limits: MediaLimits) -> MediaLimitExceeded:
    return MediaLimitExceeded("probe_memory", "probing needed more memory than media.probe_memory "
                                              f"({size(limits.probe_memory)})")


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
            except MemoryError:
                raise
            except (av.error.FFmpegError, ValueError) as e:  # a damaged packet: try the next
                last_error = e
    except MemoryError:
        raise
    except (av.error.FFmpegError, EOFError) as e:
        last_error = e
    detail = f" ({_ffmpeg_message(last_error)})" if last_error else ""
    raise UndecodableInput(f"no decodable video frame in the {video.codec_context.name} "
                           f"stream{detail}")


def _ffmpeg_message(e: BaseException) -> str:
    """ffmpeg's sentence for the error (never ``str(e)``: PyAV puts the file's path in it)."""
    return getattr(e, "strerror", None) or type(e).__name__


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
