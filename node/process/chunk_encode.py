"""Encoding one unit of a chunked video: a chunk's time range to every video rendition, or the
whole video's audio once.  The stitched renditions are one continuous stream.

The recipe, measured with the shipped ffmpeg 9.0.2 (DESIGN.md "Chunked HLS") and checked by
tests/unit/node/process/test_chunk_encode.py on real ffmpeg::

    ffmpeg ... -ss START -t DURATION+1 -i SRC          input seeking: the first frame with
                                                       pts >= START; -t only bounds the read
      -filter_complex "[0:v:0]trim=end=DURATION,split=N[s0]...;  the cut is the trim (-t alone
                       [s0]scale=...,setsar=1,format=yuv420p[v0];..."  put a frame in two chunks)
      -map [v0] ... -an
      -fps_mode passthrough -enc_time_base:v demux      no duplicated frames, no pts moves
      -c:v libx264 -preset P -threads 1 -sc_threshold 0   one thread: a re-encode is byte-identical
      -force_key_frames:v:I 0,2,4,...                  per stream (one unqualified option reached
                                                       only v:0); the grid relative to the chunk
      -output_ts_offset START+TS_OFFSET                one constant for all chunks (chunk 0 alone
                                                       would move by the B-frame delay otherwise)
      -f hls -hls_time SEG/2 -start_number FIRST_SEGMENT   the muxer cuts relative to the chunk's
                                                       first pts at the next keyframe after SEG/2:
                                                       exactly on the grid (SEG itself made one
                                                       3.97 s segment at 29.97 fps)

Audio is never encoded per chunk (AAC priming and padding overlap 26.7 ms at every border):
the ``audio`` unit encodes the whole track once, ``-output_ts_offset TS_OFFSET``, as its own HLS
rendition (``EXT-X-MEDIA TYPE=AUDIO``; node/process/master_playlist.py).

What a chunk reads: ``SRC`` is a presigned URL of the source object (``ObjectStore.presign_get``,
``-protocol_whitelist http,tcp``), so ffmpeg's input seeking turns into ranged GETs: the
container index, then the bytes from the keyframe before START to the end of the range, never
the whole file.  Where a store cannot presign (the in-memory twin) the worker gives a local copy.

Every run is bounded like a whole-video run (node/process/limits.py ``run_bounds`` on the
unit's duration) and failures are translated by ``node.process.ffmpeg.run`` alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import trio

from node.chunks.plan import ChunkRange, Plan, make_plan
from node.config import MediaLimits, Processing, Rendition
from node.process import ffmpeg
from node.process.errors import TranscodeError, UndecodableInput
from node.process.ladder import RenditionPlan, plan_ladder
from node.process.limits import run_bounds
from node.process.master_playlist import MEDIA_NAME, measured_bandwidth, parse_media_playlist
from node.process.probe import Probe

AUDIO_NAME = "audio"  # the audio rendition's directory (node.chunks.state.AUDIO is its unit)
# ffmpeg's words when a range of the source decodes to nothing or its decoder gave up: the
# probe read the file's head, so this range of the user's bytes is damaged (not retried)
RANGE_UNDECODABLE = re.compile(r"Output file is empty, nothing was encoded|"
                               r"\[dec:[^\]]*\] Terminating thread with return code|"
                               r"Invalid data found when processing input")


@dataclass(frozen=True)
class UnitOutput:
    """What one encoded unit wrote, and what its commit records for stitching."""

    files: list[Path]  # every segment, then the unit's own media playlists
    first_segment: int
    durations: list[float]  # EXTINF seconds of its segments, in order (the same in every rendition)
    stats: dict[str, dict[str, Any]]  # rendition -> {bits, peak_bps, codecs}

    def commit_output(self) -> dict[str, Any]:
        """The ``output`` a unit's commit stores (node.chunks.state.commit)."""
        return {"first_segment": self.first_segment, "durations": self.durations,
                "renditions": self.stats}


def plan_video(probe: Probe, ladder: tuple[Rendition, ...], processing: Processing, *,
               made_by_epoch: int) -> Plan:
    """The plan of a probed source under this node's config (fixed in the record once made)."""
    if probe.duration is None:
        raise TranscodeError("the probe found no duration: cannot cut the video in chunks")
    rungs = plan_ladder(probe, ladder)
    return make_plan(duration=probe.duration, segment_seconds=processing.segment_seconds,
                     chunk_segments=processing.chunk_segments, chunked=processing.chunked,
                     renditions=[asdict(r) for r in rungs], has_audio=probe.has_audio,
                     preset=processing.preset, made_by_epoch=made_by_epoch,
                     source={"video_stream": probe.video_stream, "audio_stream": probe.audio_stream,
                             "container": probe.container or None})


def rendition_plans(plan: Plan) -> list[RenditionPlan]:
    """The ladder a plan fixed, as the encoder's rendition plans."""
    names = {f.name for f in fields(RenditionPlan)}
    return [RenditionPlan(**{k: v for k, v in r.items() if k in names}) for r in plan.renditions]


def _input(src: str | os.PathLike[str], plan: Plan, formats: Sequence[str],
           ffmpeg_path: str | None) -> list[str]:
    return ffmpeg.input_head(src, formats, container=plan.source.get("container") or None,
                             ffmpeg_path=ffmpeg_path)


def chunk_command(src: str | os.PathLike[str], outdir: str | os.PathLike[str], plan: Plan,
                  chunk: ChunkRange, *, formats: Sequence[str] = MediaLimits().formats,
                  ffmpeg_path: str | None = None, max_frames: int | None = None) -> list[str]:
    """The argv encoding ``chunk`` of ``src`` to every video rendition of ``plan`` (pure)."""
    renditions = rendition_plans(plan)
    out = Path(outdir)
    if "%" in str(out):
        raise ValueError(f"output directory {out} contains '%' (ffmpeg pattern character)")
    enc = plan.encoder
    seg = enc.segment_seconds
    n = len(renditions)
    vs = plan.source.get("video_stream")
    vin = f"0:{vs}" if vs is not None else "0:v:0"
    chains = [f"[{vin}]trim=end={chunk.duration:.6f},split={n}" + "".join(f"[s{i}]" for i in range(n))]
    chains += [f"[s{i}]scale=w={p.width}:h={p.height},setsar=1,"
               + (f"fps={p.fps_limit}," if p.fps_limit else "") + f"format=yuv420p[v{i}]"
               for i, p in enumerate(renditions)]
    keyframes = ",".join(f"{t:g}" for t in chunk.keyframe_times(seg))
    cmd = _input(src, plan, formats, ffmpeg_path)
    cmd += ["-ss", f"{chunk.start:.6f}", "-t", f"{chunk.duration + 1:.6f}", "-i", str(src),
            "-filter_complex", ";".join(chains)]
    for i in range(n):
        cmd += ["-map", f"[v{i}]"]
    cmd += ["-an", "-fps_mode", "passthrough", "-enc_time_base:v", "demux",
            "-c:v", enc.video_codec, "-preset", enc.preset, "-profile:v", renditions[0].profile,
            "-threads", str(enc.threads), "-sc_threshold", "0"]
    for i, p in enumerate(renditions):
        cmd += [f"-force_key_frames:v:{i}", keyframes,
                f"-b:v:{i}", f"{p.video_kbps}k", f"-maxrate:v:{i}", f"{p.maxrate_kbps}k",
                f"-bufsize:v:{i}", f"{p.bufsize_kbps}k", f"-level:v:{i}", p.level_str]
    if max_frames is not None:
        cmd += ["-frames:v", str(max_frames)]
    cmd += ["-output_ts_offset", f"{chunk.start + enc.ts_offset:.6f}",
            "-map_metadata", "-1", "-sn", "-dn", "-max_muxing_queue_size", "1024",
            "-f", "hls", "-hls_time", f"{seg / 2:g}", "-hls_playlist_type", "vod",
            "-hls_list_size", "0", "-hls_segment_type", "mpegts",
            "-start_number", str(chunk.first_segment),
            "-hls_segment_filename", str(out / "%v" / ffmpeg.SEGMENT_NAME),
            "-var_stream_map", " ".join(f"v:{i},name:{p.name}" for i, p in enumerate(renditions)),
            str(out / "%v" / MEDIA_NAME)]
    return cmd


def audio_command(src: str | os.PathLike[str], outdir: str | os.PathLike[str], plan: Plan, *,
                  formats: Sequence[str] = MediaLimits().formats, ffmpeg_path: str | None = None,
                  read_seconds: float | None = None) -> list[str]:
    """The argv encoding the whole audio track once, as the ``audio`` rendition (pure)."""
    if not plan.has_audio:
        raise ValueError("the plan has no audio")
    out = Path(outdir) / AUDIO_NAME
    enc = plan.encoder
    aud = plan.source.get("audio_stream")
    cmd = _input(src, plan, formats, ffmpeg_path)
    if read_seconds is not None:
        cmd += ["-t", f"{read_seconds:.3f}"]
    cmd += ["-i", str(src), "-map", f"0:{aud}" if aud is not None else "0:a:0", "-vn",
            "-c:a", enc.audio_codec, "-ac", str(enc.audio_channels), "-ar", str(enc.audio_rate),
            "-b:a", f"{plan.audio_kbps}k", "-threads", str(enc.threads),
            "-output_ts_offset", f"{enc.ts_offset:.6f}",
            "-map_metadata", "-1", "-sn", "-dn",
            "-f", "hls", "-hls_time", f"{enc.segment_seconds:g}", "-hls_playlist_type", "vod",
            "-hls_list_size", "0", "-hls_segment_type", "mpegts", "-start_number", "0",
            "-hls_segment_filename", str(out / ffmpeg.SEGMENT_NAME), str(out / MEDIA_NAME)]
    return cmd


async def encode_chunk(src: str | os.PathLike[str], outdir: str | os.PathLike[str], plan: Plan,
                       chunk: ChunkRange, *, limits: MediaLimits = MediaLimits(),
                       on_progress: Callable[[float], None] | None = None,
                       ffmpeg_path: str | None = None) -> UnitOutput:
    """Encode one chunk; check it made exactly its segments, aligned in every rendition.

    Raises what ``node.process.ffmpeg.run`` raises, UndecodableInput when ffmpeg says the
    chunk's range cannot be decoded (``RANGE_UNDECODABLE``), and TranscodeError when the output
    is not the chunk's segments (count, first number, alignment)."""
    out = Path(outdir)
    renditions = rendition_plans(plan)
    for p in renditions:
        (out / p.name).mkdir(parents=True, exist_ok=True)
    bounds = run_bounds(chunk.duration, limits)
    cmd = chunk_command(src, out, plan, chunk, formats=limits.formats, ffmpeg_path=ffmpeg_path,
                        max_frames=bounds.max_frames)
    try:
        await ffmpeg.run(cmd, bounds, duration=chunk.duration, length=chunk.duration,
                         limits=limits, on_progress=on_progress)
    except TranscodeError as e:
        if RANGE_UNDECODABLE.search(e.stderr_tail):
            raise UndecodableInput(f"the video cannot be decoded between {chunk.start:g} s and "
                                   f"{chunk.end:g} s") from e
        raise
    playlists = await trio.to_thread.run_sync(ffmpeg.check_aligned, out, renditions)
    first = next(iter(playlists.values()))
    want = [ffmpeg.SEGMENT_NAME % (chunk.first_segment + k) for k in range(chunk.segments)]
    if list(first.segments) != want:
        raise TranscodeError(f"chunk {chunk.index}: wrote {len(first.segments)} segments "
                             f"({first.segments[:1]}...), the plan wants {chunk.segments} from "
                             f"{want[0]}")
    return _output(out, {p.name: playlists[p.name] for p in renditions}, chunk.first_segment)


async def encode_audio(src: str | os.PathLike[str], outdir: str | os.PathLike[str], plan: Plan, *,
                       limits: MediaLimits = MediaLimits(),
                       on_progress: Callable[[float], None] | None = None,
                       ffmpeg_path: str | None = None) -> UnitOutput:
    """Encode the whole audio track once (the ``audio`` unit)."""
    out = Path(outdir)
    (out / AUDIO_NAME).mkdir(parents=True, exist_ok=True)
    bounds = run_bounds(plan.duration, limits)
    cmd = audio_command(src, out, plan, formats=limits.formats, ffmpeg_path=ffmpeg_path,
                        read_seconds=bounds.read_seconds)
    await ffmpeg.run(cmd, bounds, duration=plan.duration, length=plan.duration, limits=limits,
                     on_progress=on_progress)
    path = out / AUDIO_NAME / MEDIA_NAME
    try:
        pl = parse_media_playlist(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise TranscodeError(f"audio: unreadable playlist: {e}") from None
    if not pl.endlist or not pl.segments:
        raise TranscodeError("audio: the playlist is unfinished or empty")
    return _output(out, {AUDIO_NAME: pl}, 0)


def _output(out: Path, playlists: dict[str, Any], first_segment: int) -> UnitOutput:
    files: list[Path] = []
    stats: dict[str, dict[str, Any]] = {}
    durations: list[float] = []
    for name, pl in playlists.items():
        paths = [out / name / uri for uri in pl.segments]
        for f in paths:
            if "/" in f.relative_to(out / name).as_posix() or not f.is_file() or f.stat().st_size == 0:
                raise TranscodeError(f"rendition {name}: segment {f.name} missing or empty")
        sizes = [f.stat().st_size for f in paths]
        peak, _avg = measured_bandwidth(sizes, pl.durations)
        stats[name] = {"bits": 8 * sum(sizes), "peak_bps": peak,
                       "codecs": (ffmpeg.sps_codec(paths[0]) if name != AUDIO_NAME else "mp4a.40.2")}
        durations = [round(d, 6) for d in pl.durations]
        files += paths
    files += [out / name / MEDIA_NAME for name in playlists]
    return UnitOutput(files=files, first_segment=first_segment, durations=durations, stats=stats)
