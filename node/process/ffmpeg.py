"""Transcode an upload into aligned adaptive HLS with one ffmpeg run.

The error tree (node/process/errors.py)::

    MediaError                   base of everything below
    ├── UndecodableInput         the user's file is not a video we can read: `failed`, no retry
    └── TranscodeError           ffmpeg failed or wrote something wrong: retry with backoff

and, in this module, the ffmpeg command, its progress, the run and the check of
its output.  ffmpeg and OSError failures of a transcode are translated here and
nowhere else (PyAV's, of a probe, in node/process/probe.py).

Bounds (node/process/limits.py ``run_bounds``, from ``media:``): ffmpeg reads nothing past
``-t READ_SECONDS`` of input, writes at most ``-frames:v MAX_FRAMES`` per rendition, opens only
local files (``-protocol_whitelist file``) through the demuxer the probe accepted
(``-format_whitelist``, ``-f``), runs under ``RLIMIT_DATA`` = ``media.ffmpeg_memory`` (set in
the child before exec) and is killed at its wall-clock deadline (``MediaLimitExceeded``). A
non-zero exit whose stderr says memory ran out is ``MediaLimitExceeded("ffmpeg_memory")``; one
that says the input was refused or unreadable is ``UndecodableInput``; anything else is
``TranscodeError`` (retried). Measured on this 2-core machine (default ladder, preset
veryfast, 44 ffmpeg threads): the smallest RLIMIT_DATA that let ffmpeg finish was 683 MiB for
a 720p source, 699 MiB for 1080p, 730 MiB for 2160p and 1048 MiB for 4320p (8K); RLIMIT_AS
needed 1.6-1.8 GiB, mostly reserved and never touched, which is why the limit is on data.

``trio.Cancelled`` is never caught; a cancelled ``transcode`` kills ffmpeg and
reaps it before the cancellation propagates. On Linux ffmpeg also gets SIGKILL
from the kernel if the node process dies (``PR_SET_PDEATHSIG``), so a node
killed mid-transcode leaves no ffmpeg running.

Pipeline::

    probe(path) -> Probe                       (sync, PyAV; call via trio.to_thread.run_sync)
    plan_ladder(probe, cfg.ladder)             (pure, ladder.py)
    await transcode(src, outdir, plans, ...)   (one ffmpeg process, then check_aligned,
                                                then master.m3u8 written by us)

The ffmpeg command (``ffmpeg_command``), for a source with audio and three
renditions, segment 2 s::

    ffmpeg -hide_banner -nostdin -y -loglevel warning -nostats -progress pipe:1
      -protocol_whitelist file -format_whitelist mov,mp4,matroska,...   (media.formats)
      -f mov -t READ_SECONDS                       (the demuxer the probe found; the read limit)
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
      -frames:v MAX_FRAMES -map_metadata -1 -sn -dn -max_muxing_queue_size 1024
      -f hls -hls_time 2 -hls_playlist_type vod -hls_list_size 0
      -hls_segment_type mpegts -start_number 0
      -hls_segment_filename OUT/%v/seg_%05d.ts
      -var_stream_map "v:0,a:0,name:144p v:1,a:1,name:240p v:2,a:2,name:360p"
      OUT/%v/index.m3u8

A source above 60 frames/s gets ``fps=60`` before ``format`` in each chain
(node/process/ladder.py MAX_FPS). Keyframes forced at every multiple of the segment length in every rendition
(one decoder feeding ``split``, scene-cut keyframes off) make the segments
line up across renditions: same count, same EXTINF durations, which
``check_aligned`` verifies before anything is reported as written.

Output layout under OUT: ``<name>/index.m3u8``, ``<name>/seg_00000.ts`` ...,
and ``master.m3u8`` (node/process/master_playlist.py) whose URIs are relative.

Measured on the 2-core dev machine, preset veryfast, threads 0 (the test
``tests/unit/node/process/test_media_pipeline.py::test_transcode_three_renditions`` prints its figure; run
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
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import trio

from node.process.master_playlist import (MASTER_NAME, MEDIA_NAME, MediaPlaylist, master_playlist,
                             measured_bandwidth, parse_media_playlist)
from node.process.ladder import RenditionPlan, plan_ladder
from node.config import MediaLimits
from node.process.errors import MediaError, TranscodeError, UndecodableInput
from node.process.limits import RunBounds, run_bounds
from node.process.probe import Probe

STDERR_TAIL = 4096  # bytes of ffmpeg's stderr kept for a TranscodeError (the log, never the record)
# ffmpeg's words when an allocation failed (under RLIMIT_DATA): x264, libavutil, the h264 decoder
OUT_OF_MEMORY = re.compile(r"Cannot allocate memory|malloc of size \d+ failed|out of memory", re.I)
# ffmpeg's words when the input itself was refused or unreadable: the user's bytes
# (a decode error mid-stream does not end ffmpeg; a failure to open the input does)
INPUT_REFUSED = re.compile(r"not on whitelist|Error opening input: Invalid data found when processing input")
SEGMENT_NAME = "seg_%05d.ts"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


# ---- ffmpeg command ----------------------------------------------------------------------------
@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: $SHOAL_FFMPEG, else the one imageio-ffmpeg ships."""
    if os.environ.get("SHOAL_FFMPEG"):
        return os.environ["SHOAL_FFMPEG"]
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def input_head(src: str | os.PathLike[str], formats: Sequence[str], *, container: str | None = None,
               ffmpeg_path: str | None = None) -> list[str]:
    """The start of an argv reading ``src`` (a local path, or an http(s) URL such as a presigned
    S3 GET): quiet, progress on stdout, the protocol whitelist for what ``src`` is, the input
    format whitelist, and ``-f container`` when the probe named one; a URL reads with a timeout
    and reconnects.  The caller adds its input options, ``-i src`` and the outputs."""
    if not formats:
        raise ValueError("no input formats allowed")
    remote = str(src).startswith(("http://", "https://"))
    protocols = ("https,tls,tcp" if str(src).startswith("https://") else "http,tcp") if remote else "file"
    cmd = [ffmpeg_path or ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel",
           "warning", "-nostats", "-progress", "pipe:1", "-protocol_whitelist", protocols,
           "-format_whitelist", ",".join(formats)]
    if remote:
        cmd += ["-rw_timeout", "30000000", "-reconnect", "1", "-reconnect_on_network_error", "1"]
    if container:
        cmd += ["-f", str(container)]
    return cmd


def ffmpeg_command(src: str | os.PathLike[str], outdir: str | os.PathLike[str],
                   plans: Sequence[RenditionPlan], *, segment_seconds: int | float,
                   preset: str, threads: int, has_audio: bool,
                   video_stream: int | None = None, audio_stream: int | None = None,
                   ffmpeg: str | None = None, formats: Sequence[str] = MediaLimits().formats,
                   input_format: str | None = None, read_seconds: float | None = None,
                   max_frames: int | None = None) -> list[str]:
    """The argv of the single ffmpeg run producing every rendition (see module docstring).

    ``video_stream``/``audio_stream`` are absolute stream indexes from the probe; by
    default the first video and first audio stream. ``formats`` is the input format
    whitelist, ``input_format`` the demuxer the probe found, ``read_seconds`` and
    ``max_frames`` the read and frame limits. Pure: raises ValueError on bad
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
    if not formats:
        raise ValueError("no input formats allowed")
    cmd = [ffmpeg or ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "warning",
           "-nostats", "-progress", "pipe:1",
           "-protocol_whitelist", "file", "-format_whitelist", ",".join(formats)]
    if input_format:
        cmd += ["-f", input_format]
    if read_seconds is not None:
        cmd += ["-t", f"{read_seconds:.3f}"]
    cmd += ["-i", str(src), "-filter_complex", ";".join(chains)]
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
    if max_frames is not None:
        cmd += ["-frames:v", str(max_frames)]
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
                    ffmpeg: str | None = None, limits: MediaLimits = MediaLimits(),
                    input_format: str | None = None) -> list[Path]:
    """Run ffmpeg, verify alignment, write master.m3u8; return the files written.

    Order of the returned paths is the safe upload order: every segment, then every
    media playlist, then the master last. ``on_progress(fraction)`` is called with
    non-decreasing fractions in [0, 1], the last one 1.0 after verification.
    ``limits`` bound the run (``run_bounds(duration, limits)``; an unknown duration
    counts as ``max_duration_s``).

    Raises MediaLimitExceeded (wall-clock deadline, memory), UndecodableInput (ffmpeg
    refused or could not read the input), TranscodeError (ffmpeg missing, any other
    non-zero exit, misaligned or missing output). On cancellation ffmpeg is killed and
    reaped before Cancelled propagates.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for p in plans:
        (out / p.name).mkdir(exist_ok=True)
    length = duration if duration is not None and duration >= 0 else limits.max_duration_s
    bounds = run_bounds(length, limits)
    cmd = ffmpeg_command(src, out, plans, segment_seconds=segment_seconds, preset=preset,
                         threads=threads, has_audio=has_audio, video_stream=video_stream,
                         audio_stream=audio_stream, ffmpeg=ffmpeg, formats=limits.formats,
                         input_format=input_format, read_seconds=bounds.read_seconds,
                         max_frames=bounds.max_frames)
    await run(cmd, bounds, duration=duration, length=length, limits=limits,
              on_progress=on_progress)
    playlists = await trio.to_thread.run_sync(check_aligned, out, plans)
    files = await trio.to_thread.run_sync(_write_master, out, plans, playlists)
    if on_progress is not None:
        on_progress(1.0)
    return files


async def run(cmd: list[str], bounds: RunBounds, *, duration: float | None, length: float,
              limits: MediaLimits, on_progress: Callable[[float], None] | None = None) -> None:
    """Run one bounded ffmpeg (the argv ``cmd``, ``-progress pipe:1`` in it) to its end.

    The one place an ffmpeg run happens and its failures are translated (the module docstring):
    ``bounds`` (``run_bounds``) give the memory limit and the wall-clock deadline, ``length``
    the seconds the deadline's message names.  ``on_progress`` gets fractions below 1.0.
    Raises MediaLimitExceeded, UndecodableInput or TranscodeError; on cancellation ffmpeg is
    killed and reaped before Cancelled propagates.
    """
    parser = ProgressParser(duration)
    rc: int | None = None
    # stderr goes to an unnamed temporary file: no pipe to drain, no concurrent task.
    with tempfile.TemporaryFile() as errfile:
        try:
            proc = _spawn(cmd, errfile, bounds)
        except OSError as e:
            raise TranscodeError(f"cannot start ffmpeg ({type(e).__name__})", str(e)) from e
        assert proc.stdout is not None
        stdout = trio.lowlevel.FdStream(os.dup(proc.stdout.fileno()))
        proc.stdout.close()
        try:
            with trio.move_on_after(bounds.wall_seconds):
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
        if rc is None:  # the deadline passed: ffmpeg was killed and reaped above
            raise bounds.wall_time_exceeded(length, limits)
        if rc != 0:
            tail = _tail(errfile)
            if OUT_OF_MEMORY.search(tail):
                raise bounds.memory_exceeded()
            refused = INPUT_REFUSED.search(tail)
            if refused:
                why = "not on whitelist" if "whitelist" in refused.group(0) else "invalid data"
                raise UndecodableInput(f"ffmpeg could not read the file ({why})")
            how = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            raise TranscodeError(f"ffmpeg {how}", tail)


def _spawn(cmd: list[str], errfile, bounds: RunBounds) -> subprocess.Popen[bytes]:
    """Start ffmpeg from *this* thread, set to die with it.

    Not trio.lowlevel.open_process: that forks from a worker thread, and Linux's
    parent-death signal follows the thread that forked, which trio retires after
    10 s idle. Forking here ties ffmpeg to the thread running trio: if the node
    is killed (kill -9 included), the kernel SIGKILLs ffmpeg too, so no orphan
    keeps burning CPU after a crash. The fork blocks the loop for a few ms.
    ffmpeg's memory is bounded before exec (``RLIMIT_DATA``).
    """
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=errfile, preexec_fn=_child_setup(os.getpid(), bounds.memory_bytes))


def _child_setup(parent: int, memory_bytes: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
        if _libc is not None:
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
