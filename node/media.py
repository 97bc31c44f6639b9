"""Probe an upload and transcode it into aligned adaptive HLS with one ffmpeg run.

Exception tree (all raised here; ffmpeg, PyAV and OSError failures are
translated in this module and nowhere else)::

    MediaError                   base of everything below
    ├── UndecodableInput         the user's file is not a video we can read: `failed`, no retry
    └── TranscodeError           ffmpeg failed or wrote something wrong: retry with backoff

``trio.Cancelled`` is never caught; a cancelled ``transcode`` kills ffmpeg and
reaps it before the cancellation propagates. On Linux ffmpeg also gets SIGKILL
from the kernel if the node process dies (``PR_SET_PDEATHSIG``), so a node
killed mid-transcode leaves no ffmpeg running.

Pipeline::

    probe(path) -> Probe                       (sync, PyAV; call via trio.to_thread.run_sync)
    plan_ladder(probe, cfg.ladder)             (pure, node.ladder)
    await transcode(src, outdir, plans, ...)   (one ffmpeg process, then check_aligned,
                                                then master.m3u8 written by us)

The ffmpeg command (``ffmpeg_command``), for a source with audio and three
renditions, segment 2 s::

    ffmpeg -hide_banner -nostdin -y -loglevel warning -nostats -progress pipe:1
      -i SRC
      -filter_complex "[0:v:0]split=3[s0][s1][s2];
                       [s0]scale=w=256:h=144,setsar=1,format=yuv420p[v0];
                       [s1]scale=w=426:h=240,setsar=1,format=yuv420p[v1];
                       [s2]scale=w=640:h=360,setsar=1,format=yuv420p[v2]"
      -map [v0] -map [v1] -map [v2] -map 0:a:0 -map 0:a:0 -map 0:a:0
      -c:v libx264 -preset veryfast -profile:v main -threads 0
      -sc_threshold 0 -force_key_frames "expr:gte(t,n_forced*2)"
      -b:v:0 200k -maxrate:v:0 220k -bufsize:v:0 400k -level:v:0 3.0   (one set per rendition)
      -c:a aac -ac 2 -ar 48000 -b:a:0 64k ...                          (omitted without audio)
      -map_metadata -1 -sn -dn -max_muxing_queue_size 1024
      -f hls -hls_time 2 -hls_playlist_type vod -hls_list_size 0
      -hls_segment_type mpegts -start_number 0
      -hls_segment_filename OUT/%v/seg_%05d.ts
      -var_stream_map "v:0,a:0,name:144p v:1,a:1,name:240p v:2,a:2,name:360p"
      OUT/%v/index.m3u8

A source above 60 frames/s gets ``fps=60`` before ``format`` in each chain
(node.ladder.MAX_FPS). Keyframes forced at every multiple of the segment length in every rendition
(one decoder feeding ``split``, scene-cut keyframes off) make the segments
line up across renditions: same count, same EXTINF durations, which
``check_aligned`` verifies before anything is reported as written.

Output layout under OUT: ``<name>/index.m3u8``, ``<name>/seg_00000.ts`` ...,
and ``master.m3u8`` (node.hls_master) whose URIs are relative.

Measured on the 2-core dev machine, preset veryfast, threads 0 (the test
``tests/test_media.py::test_transcode_three_renditions`` prints its figure; run
pytest with ``-s``):

====================================  ==========  ===========  =================
source -> renditions                  wall        ffmpeg CPU   note
====================================  ==========  ===========  =================
4 s 640x360 -> 144p/240p/360p          0.47-0.6 s  0.8 s        quiet machine
4 s 640x360 -> 144p/240p/360p          0.6-0.7 s   0.8 s        load average ~7
4 s 1280x720 -> 360p/480p/720p         1.8-2.4 s   2.3 s        load average ~8
30 s 1280x720 -> 360p/480p/720p        16.5 s      14.6 s       load average ~13
====================================  ==========  ===========  =================

So roughly 0.5 CPU-seconds per source second for the 720p ladder: 1.7-1.8x
real time on a busy 2-core machine, at best ~4x with both cores free.
``probe`` takes 5-20 ms.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import trio

from node.hls_master import (MASTER_NAME, MEDIA_NAME, MediaPlaylist, master_playlist,
                             measured_bandwidth, parse_media_playlist)
from node.ladder import RenditionPlan, plan_ladder

__all__ = [
    "MediaError", "UndecodableInput", "TranscodeError", "Probe", "probe", "plan_ladder",
    "RenditionPlan", "ffmpeg_command", "master_playlist", "transcode", "check_aligned",
    "ProgressParser", "ffmpeg_exe",
]

STDERR_TAIL = 4096  # bytes of ffmpeg's stderr kept for a TranscodeError
PROBE_PACKET_BUDGET = 2000  # demuxed packets we allow before giving up on a first frame
# libavformat's demuxers of bare video elementary streams (no container): their probes accept
# short runs of random bytes (1 in ~2,000 random 8 KiB files reads as H.263, some with a
# "decodable" frame; the 30-minute chaos run turned one random file into a "ready" video).
# A video platform's uploads come in containers (MP4, MOV, MKV, WebM, AVI, MPEG-TS, ...).
RAW_VIDEO_DEMUXERS = frozenset({
    "h261", "h263", "h264", "hevc", "vvc", "evc", "m4v", "mpegvideo", "cavsvideo", "avs2", "avs3",
    "dirac", "dnxhd", "vc1", "obu", "mjpeg", "mjpeg_2000", "ingenient", "rawvideo"})
SEGMENT_NAME = "seg_%05d.ts"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


# ---- errors -------------------------------------------------------------------------------
class MediaError(Exception):
    """Base of the media errors."""


class UndecodableInput(MediaError):
    """The input is not a video we can decode. The user's fault: do not retry.

    ``reason`` is a sentence for the user (it ends up in the video record).
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TranscodeError(MediaError):
    """ffmpeg failed, or its output is wrong. Infrastructure: retry with backoff."""

    def __init__(self, reason: str, stderr_tail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        if not self.stderr_tail:
            return self.reason
        last = self.stderr_tail.strip().splitlines()[-1:] or [""]
        return f"{self.reason}: {last[0]}"


# ---- probe ----------------------------------------------------------------------------------
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


# ---- ffmpeg command ----------------------------------------------------------------------------
@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: $SHOAL_FFMPEG, else the one imageio-ffmpeg ships."""
    if os.environ.get("SHOAL_FFMPEG"):
        return os.environ["SHOAL_FFMPEG"]
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_command(src: str | os.PathLike[str], outdir: str | os.PathLike[str],
                   plans: Sequence[RenditionPlan], *, segment_seconds: int | float,
                   preset: str, threads: int, has_audio: bool,
                   video_stream: int | None = None, audio_stream: int | None = None,
                   ffmpeg: str | None = None) -> list[str]:
    """The argv of the single ffmpeg run producing every rendition (see module docstring).

    ``video_stream``/``audio_stream`` are absolute stream indexes from the probe; by
    default the first video and first audio stream. Pure: raises ValueError on bad
    arguments, touches nothing.
    """
    if not plans:
        raise ValueError("no renditions to encode")
    if segment_seconds <= 0:
        raise ValueError("segment_seconds must be positive")
    out = Path(outdir)
    if "%" in str(out):
        raise ValueError(f"output directory {out} contains '%' (ffmpeg pattern character)")
    n = len(plans)
    vin = f"0:{video_stream}" if video_stream is not None else "0:v:0"
    ain = f"0:{audio_stream}" if audio_stream is not None else "0:a:0"
    chains = [f"[{vin}]split={n}" + "".join(f"[s{i}]" for i in range(n))]
    chains += [f"[s{i}]scale=w={p.width}:h={p.height},setsar=1,"
               + (f"fps={p.fps_limit}," if p.fps_limit else "") + f"format=yuv420p[v{i}]"
               for i, p in enumerate(plans)]
    seg = f"{segment_seconds:g}"
    cmd = [ffmpeg or ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "warning",
           "-nostats", "-progress", "pipe:1", "-i", str(src),
           "-filter_complex", ";".join(chains)]
    for i in range(n):
        cmd += ["-map", f"[v{i}]"]
    if has_audio:
        for _ in range(n):
            cmd += ["-map", ain]
    cmd += ["-c:v", "libx264", "-preset", preset, "-profile:v", plans[0].profile,
            "-threads", str(threads), "-sc_threshold", "0",
            "-force_key_frames", f"expr:gte(t,n_forced*{seg})"]
    for i, p in enumerate(plans):
        cmd += [f"-b:v:{i}", f"{p.video_kbps}k", f"-maxrate:v:{i}", f"{p.maxrate_kbps}k",
                f"-bufsize:v:{i}", f"{p.bufsize_kbps}k", f"-level:v:{i}", p.level_str]
    if has_audio:
        cmd += ["-c:a", "aac", "-ac", "2", "-ar", "48000"]
        for i, p in enumerate(plans):
            cmd += [f"-b:a:{i}", f"{p.audio_kbps or 64}k"]
    var_map = " ".join(f"v:{i},a:{i},name:{p.name}" if has_audio else f"v:{i},name:{p.name}"
                       for i, p in enumerate(plans))
    cmd += ["-map_metadata", "-1", "-sn", "-dn", "-max_muxing_queue_size", "1024",
            "-f", "hls", "-hls_time", seg, "-hls_playlist_type", "vod", "-hls_list_size", "0",
            "-hls_segment_type", "mpegts",
            "-start_number", "0",
            "-hls_segment_filename", str(out / "%v" / SEGMENT_NAME),
            "-var_stream_map", var_map,
            str(out / "%v" / MEDIA_NAME)]
    return cmd


# ---- progress -----------------------------------------------------------------------------------
class ProgressParser:
    """Turns ``-progress pipe:1`` output into fractions of ``duration`` done.

    Pure: ``feed(bytes)`` returns the new fractions (non-decreasing, within [0, 1]).
    Without a known duration it reports nothing until ``progress=end`` (1.0).
    """

    def __init__(self, duration: float | None):
        self._total_us = duration * 1_000_000 if duration and duration > 0 else None
        self._buf = b""
        self.fraction = 0.0

    def feed(self, data: bytes) -> list[float]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for raw in lines:
            key, _, value = raw.decode("ascii", "replace").strip().partition("=")
            new = None
            if key == "out_time_us" and self._total_us:
                try:
                    new = min(1.0, max(0.0, int(value) / self._total_us))
                except ValueError:  # "N/A" before the first frame
                    continue
            elif key == "progress" and value == "end":
                new = 1.0
            if new is not None and new > self.fraction:
                self.fraction = new
                out.append(new)
        return out


# ---- transcode ------------------------------------------------------------------------------------
async def transcode(src: str | os.PathLike[str], outdir: str | os.PathLike[str],
                    plans: Sequence[RenditionPlan], *, segment_seconds: int | float,
                    preset: str, threads: int, has_audio: bool, duration: float | None,
                    on_progress: Callable[[float], None] | None = None,
                    video_stream: int | None = None, audio_stream: int | None = None,
                    ffmpeg: str | None = None) -> list[Path]:
    """Run ffmpeg, verify alignment, write master.m3u8; return the files written.

    Order of the returned paths is the safe upload order: every segment, then every
    media playlist, then the master last. ``on_progress(fraction)`` is called with
    non-decreasing fractions in [0, 1], the last one 1.0 after verification.

    Raises TranscodeError (ffmpeg missing, non-zero exit, misaligned or missing
    output). On cancellation ffmpeg is killed and reaped before Cancelled propagates.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for p in plans:
        (out / p.name).mkdir(exist_ok=True)
    cmd = ffmpeg_command(src, out, plans, segment_seconds=segment_seconds, preset=preset,
                         threads=threads, has_audio=has_audio, video_stream=video_stream,
                         audio_stream=audio_stream, ffmpeg=ffmpeg)
    parser = ProgressParser(duration)
    # stderr goes to an unnamed temporary file: no pipe to drain, no concurrent task.
    with tempfile.TemporaryFile() as errfile:
        try:
            proc = _spawn(cmd, errfile)
        except OSError as e:
            raise TranscodeError(f"cannot start ffmpeg ({cmd[0]}): {e}") from e
        assert proc.stdout is not None
        stdout = trio.lowlevel.FdStream(os.dup(proc.stdout.fileno()))
        proc.stdout.close()
        try:
            while chunk := await stdout.receive_some(4096):
                for fraction in parser.feed(chunk):
                    if on_progress is not None and fraction < 1.0:
                        on_progress(fraction)
            while (rc := proc.poll()) is None:  # stdout closed: ffmpeg is exiting
                await trio.sleep(0.01)
        finally:
            stdout.close()
            if proc.poll() is None:  # cancelled, or on_progress raised
                proc.kill()
                with trio.CancelScope(shield=True):
                    while proc.poll() is None:  # reap it: no zombie, no orphan
                        await trio.sleep(0.01)
        if rc != 0:
            how = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            raise TranscodeError(f"ffmpeg {how}", _tail(errfile))
    playlists = await trio.to_thread.run_sync(check_aligned, out, plans)
    files = await trio.to_thread.run_sync(_write_master, out, plans, playlists)
    if on_progress is not None:
        on_progress(1.0)
    return files


def _spawn(cmd: list[str], errfile) -> subprocess.Popen[bytes]:
    """Start ffmpeg from *this* thread, set to die with it.

    Not trio.lowlevel.open_process: that forks from a worker thread, and Linux's
    parent-death signal follows the thread that forked, which trio retires after
    10 s idle. Forking here ties ffmpeg to the thread running trio: if the node
    is killed (kill -9 included), the kernel SIGKILLs ffmpeg too, so no orphan
    keeps burning CPU after a crash. The fork blocks the loop for a few ms.
    """
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=errfile, preexec_fn=_die_with_parent(os.getpid()))


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    if _libc is None:
        return None

    def preexec() -> None:  # runs in the child between fork and exec
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _tail(f) -> str:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - STDERR_TAIL))
    return f.read().decode("utf-8", "replace")


def check_aligned(outdir: str | os.PathLike[str],
                  plans: Sequence[RenditionPlan]) -> dict[str, MediaPlaylist]:
    """Every rendition is a finished VOD playlist with the same segment count and
    EXTINF durations (to the millisecond) as the others, and every segment it names
    exists and is non-empty. Returns the parsed playlists by rendition name.

    Raises TranscodeError naming the first difference.
    """
    out = Path(outdir)
    parsed: dict[str, MediaPlaylist] = {}
    for p in plans:
        path = out / p.name / MEDIA_NAME
        try:
            pl = parse_media_playlist(path.read_text())
        except FileNotFoundError:
            raise TranscodeError(f"rendition {p.name}: {MEDIA_NAME} was not written") from None
        except (ValueError, OSError, UnicodeDecodeError) as e:
            raise TranscodeError(f"rendition {p.name}: unreadable playlist: {e}") from None
        if not pl.endlist:
            raise TranscodeError(f"rendition {p.name}: playlist has no #EXT-X-ENDLIST")
        if not pl.segments:
            raise TranscodeError(f"rendition {p.name}: playlist lists no segments")
        for uri in pl.segments:
            seg = out / p.name / uri
            if "/" in uri or not seg.is_file() or seg.stat().st_size == 0:
                raise TranscodeError(f"rendition {p.name}: segment {uri} missing or empty")
        parsed[p.name] = pl
    first_name, first = next(iter(parsed.items()))
    want = [round(d, 3) for d in first.durations]
    for name, pl in parsed.items():
        if len(pl.segments) != len(first.segments):
            raise TranscodeError(f"renditions not aligned: {first_name} has "
                                 f"{len(first.segments)} segments, {name} has {len(pl.segments)}")
        got = [round(d, 3) for d in pl.durations]
        if got != want:
            i = next(k for k, (a, b) in enumerate(zip(want, got)) if a != b)
            raise TranscodeError(f"renditions not aligned: segment {i} lasts {want[i]} s in "
                                 f"{first_name} but {got[i]} s in {name}")
    return parsed


def _write_master(out: Path, plans: Sequence[RenditionPlan],
                  playlists: dict[str, MediaPlaylist]) -> list[Path]:
    segments: list[Path] = []
    media: list[Path] = []
    final: list[RenditionPlan] = []
    codecs: dict[str, str] = {}
    for p in plans:
        pl = playlists[p.name]
        paths = [out / p.name / uri for uri in pl.segments]
        peak, average = measured_bandwidth([f.stat().st_size for f in paths], pl.durations)
        # BANDWIDTH must not be exceeded by any segment (RFC 8216 4.3.4.2).
        final.append(replace(p, bandwidth=max(p.bandwidth, peak), average_bandwidth=average))
        # x264 writes the lowest profile the stream fits (ultrafast -> Constrained Baseline),
        # so CODECS states what the SPS says, falling back to what we asked for.
        video = sps_codec(paths[0]) or p.video_codec
        codecs[p.name] = video + (",mp4a.40.2" if p.audio_kbps else "")
        segments += paths
        media.append(out / p.name / MEDIA_NAME)
    master = out / MASTER_NAME
    tmp = out / (MASTER_NAME + ".tmp")
    tmp.write_text(master_playlist(final, codecs))
    tmp.replace(master)
    return segments + media + [master]


def sps_codec(segment: Path, scan: int = 64 * 1024) -> str | None:
    """``avc1.PPCCLL`` from the first H.264 sequence parameter set in a segment's first
    ``scan`` bytes (in a transport stream it sits in the first PES packet), or None."""
    with open(segment, "rb") as f:
        data = f.read(scan)
    start = 0
    while (i := data.find(b"\x00\x00\x01", start)) >= 0 and i + 7 <= len(data):
        if data[i + 3] & 0x1F == 7:  # nal_unit_type 7: SPS
            return "avc1." + data[i + 4:i + 7].hex()
        start = i + 3
    return None

