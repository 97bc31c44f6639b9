"""The rendition ladder: which renditions a source gets, and at what rates.

Pure functions only (no I/O), each with table tests in tests/unit/node/process/test_media_pipeline.py:

- ``plan_ladder(probe, ladder)``: the configured rungs that fit the source.
  Rungs taller than the source are dropped (we never upscale).  Invariant: a
  source at least ``2 * MIN_EXTRA_HEIGHT`` (64) lines tall gets at least two
  renditions, so playback is adaptive.  When fewer than two rungs fit:

  1. a rendition at the source's own height (rounded down to even) is added
     if it is taller than every fitting rung (e.g. 320x180 -> 144p + 180p);
  2. if that still makes one, a rendition at half the top height (even) is
     added below, if it is at least ``MIN_EXTRA_HEIGHT`` (32) lines
     (e.g. 160x120 -> 60p + 120p; 256x144 -> 72p + 144p).

  The one exception: a source under 64 lines (after rounding to even) gets a
  single rendition at its own height.  Added renditions are named
  ``<height>p`` and take the bitrate of the nearest rung scaled by the pixel
  ratio (rounded half up), at least ``MIN_VIDEO_KBPS``; audio as that rung.
  Sources above ``MAX_FPS`` (60) frames/s are encoded at 60 (``fps_limit``).
- ``even_width(height, aspect)``: width keeping the display aspect, even
  (4:2:0 chroma needs even dimensions).
- ``h264_level(width, height, fps, maxrate_kbps)``: the lowest H.264 level
  (ITU-T H.264 Table A-1, Main profile) that admits the rendition, never
  below 3.0 so every player accepts it.
- ``avc1_codec(profile, level)``: the RFC 6381 ``CODECS`` string, e.g.
  Main@3.1 -> ``avc1.4d401f``.

Rates (all derived from the rung's ``video_kbps`` / ``audio_kbps``)::

    maxrate_kbps       = ceil(video_kbps * MAXRATE_PERCENT / 100)   # x264 VBV peak
    bufsize_kbps       = video_kbps * BUFSIZE_FACTOR            # VBV window
    average_bandwidth  = ceil((video_kbps + audio_kbps) * 1000 * (100 + OVERHEAD_PERCENT) / 100)
    bandwidth          = ceil((maxrate_kbps + audio_kbps) * 1000 * (100 + OVERHEAD_PERCENT) / 100)

``audio_kbps`` is 0 when the source has no audio.  The master playlist uses
these nominal figures unless the measured segments demand more
(node/process/ffmpeg.py raises ``bandwidth`` to the measured peak).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from node.config import Rendition

MAXRATE_PERCENT = 110  # VBV peak relative to the average video bitrate
BUFSIZE_FACTOR = 2  # VBV buffer = 2 s of average video bitrate
OVERHEAD_PERCENT = 10  # MPEG-TS + PES headers, roughly 10% on small segments
MAX_FPS = 60  # sources above this are encoded at MAX_FPS (HLS players' ceiling)
MIN_LEVEL = 30  # H.264 level 3.0: the floor every HLS player supports
PROFILE = "main"
MIN_EXTRA_HEIGHT = 32  # an added lower rendition is at least this tall (else the source gets one)
MIN_VIDEO_KBPS = 32  # floor of an added rendition's scaled video bitrate

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")

# H.264 Table A-1: level_idc -> (max macroblocks/s, max frame size in macroblocks,
# max video bitrate in kbit/s for Main profile).
H264_LEVELS: tuple[tuple[int, int, int, int], ...] = (
    (30, 40_500, 1_620, 10_000),
    (31, 108_000, 3_600, 14_000),
    (32, 216_000, 5_120, 20_000),
    (40, 245_760, 8_192, 20_000),
    (41, 245_760, 8_192, 50_000),
    (42, 522_240, 8_704, 50_000),
    (50, 589_824, 22_080, 135_000),
    (51, 983_040, 36_864, 240_000),
    (52, 2_073_600, 36_864, 240_000),
)

# profile name -> (profile_idc, constraint flags byte) as x264 writes them in the SPS.
# x264 sets constraint_set1 for Main (a Main stream is decodable by any Main decoder).
H264_PROFILES: dict[str, tuple[int, int]] = {
    "baseline": (0x42, 0xC0),
    "main": (0x4D, 0x40),
    "high": (0x64, 0x00),
}


class SourceShape(Protocol):
    """What the ladder needs from a probe (node.process.probe.Probe has it)."""

    width: int
    height: int
    fps: float
    has_audio: bool


@dataclass(frozen=True)
class RenditionPlan:
    name: str  # directory name and var_stream_map name; [A-Za-z0-9_.-]
    width: int  # Invariant: even, >= 2
    height: int  # Invariant: even, >= 2, <= source height (no upscaling)
    video_kbps: int
    audio_kbps: int  # 0 when the source has no audio
    maxrate_kbps: int
    bufsize_kbps: int
    bandwidth: int  # bits/s, peak, for EXT-X-STREAM-INF BANDWIDTH
    average_bandwidth: int  # bits/s, for AVERAGE-BANDWIDTH
    level: int  # H.264 level_idc, e.g. 31 for 3.1
    fps_limit: int | None = None  # output frame rate cap when the source exceeds MAX_FPS
    profile: str = PROFILE

    @property
    def level_str(self) -> str:
        """ffmpeg's ``-level`` argument: 31 -> ``"3.1"``."""
        return f"{self.level // 10}.{self.level % 10}"

    @property
    def video_codec(self) -> str:
        return avc1_codec(self.profile, self.level)

    def codecs(self) -> str:
        """The CODECS attribute value for this rendition."""
        return self.video_codec + (",mp4a.40.2" if self.audio_kbps else "")


def even_down(n: float) -> int:
    """Largest even integer <= n, at least 2."""
    return max(2, int(n) // 2 * 2)


def even_width(height: int, aspect: float) -> int:
    """Width for ``height`` at display ``aspect`` (w/h), rounded to the nearest even, >= 2."""
    return max(2, round(height * aspect / 2) * 2)


def h264_level(width: int, height: int, fps: float, maxrate_kbps: int) -> int:
    """Lowest level_idc (>= MIN_LEVEL) admitting the frame size, macroblock rate and bitrate.

    Raises ValueError if even level 5.2 cannot hold it.
    """
    mbs = math.ceil(width / 16) * math.ceil(height / 16)
    mbps = mbs * max(fps, 1.0)
    for level, max_mbps, max_fs, max_kbps in H264_LEVELS:
        if level >= MIN_LEVEL and mbs <= max_fs and mbps <= max_mbps and maxrate_kbps <= max_kbps:
            return level
    raise ValueError(f"{width}x{height}@{fps:g} at {maxrate_kbps} kbit/s exceeds H.264 level 5.2")


def avc1_codec(profile: str, level: int) -> str:
    """RFC 6381 codec string: ``avc1.PPCCLL`` (profile_idc, constraint flags, level_idc) in hex."""
    try:
        idc, flags = H264_PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown H.264 profile {profile!r}") from None
    return f"avc1.{idc:02x}{flags:02x}{level:02x}"


def _plan(name: str, width: int, height: int, video_kbps: int, audio_kbps: int,
          fps: float) -> RenditionPlan:
    fps_limit = MAX_FPS if fps > MAX_FPS else None
    maxrate = -(-video_kbps * MAXRATE_PERCENT // 100)  # integer ceil

    def with_overhead(kbps: int) -> int:  # integer arithmetic: no 510400.00000000006
        return -(-kbps * 1000 * (100 + OVERHEAD_PERCENT) // 100)

    return RenditionPlan(
        name=name, width=width, height=height, video_kbps=video_kbps, audio_kbps=audio_kbps,
        maxrate_kbps=maxrate, bufsize_kbps=video_kbps * BUFSIZE_FACTOR,
        bandwidth=with_overhead(maxrate + audio_kbps),
        average_bandwidth=with_overhead(video_kbps + audio_kbps),
        level=h264_level(width, height, min(fps, MAX_FPS), maxrate), fps_limit=fps_limit,
    )


def plan_ladder(probe: SourceShape, ladder: tuple[Rendition, ...]) -> list[RenditionPlan]:
    """Renditions for this source, lowest first.

    Raises ValueError for an empty ladder, a bad or duplicate rendition name, or a
    non-positive height or bitrate (configuration errors, not the user's input).
    """
    if not ladder:
        raise ValueError("the ladder has no renditions")
    names = [r.name for r in ladder]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate rendition names in {names}")
    for r in ladder:
        if not _NAME.fullmatch(r.name):
            raise ValueError(f"rendition name {r.name!r}: use 1-32 of [A-Za-z0-9_.-]")
        if r.height < 2 or r.video_kbps <= 0 or r.audio_kbps < 0:
            raise ValueError(f"rendition {r.name!r}: height >= 2 and bitrates > 0 required")
    if probe.width < 2 or probe.height < 2:
        raise ValueError(f"source of {probe.width}x{probe.height} is too small to encode")
    aspect = probe.width / probe.height
    fps = probe.fps if probe.fps > 0 else 30.0

    def audio(r: Rendition) -> int:
        return r.audio_kbps if probe.has_audio else 0

    rungs = sorted(ladder, key=lambda r: r.height)
    fitting = [r for r in rungs if even_down(r.height) <= probe.height]
    # (name, height, video_kbps, audio_kbps), lowest first
    chosen = [(r.name, even_down(r.height), r.video_kbps, audio(r)) for r in fitting]
    source_h = even_down(probe.height)
    if len(chosen) < 2 and (not chosen or source_h > chosen[-1][1]):
        ref = fitting[-1] if fitting else rungs[0]
        chosen.append(_extra(source_h, ref, audio(ref), names))
    if len(chosen) < 2:
        lower_h = even_down(chosen[0][1] / 2)
        if lower_h >= MIN_EXTRA_HEIGHT:
            ref = fitting[0] if fitting else rungs[0]
            chosen.insert(0, _extra(lower_h, ref, audio(ref), names))
    return [_plan(name, even_width(h, aspect), h, kbps, akbps, fps) for name, h, kbps, akbps in chosen]


def _extra(height: int, ref: Rendition, audio_kbps: int,
           taken: list[str]) -> tuple[str, int, int, int]:
    """A rendition not in the ladder: ``ref``'s bitrate scaled by the pixel ratio (half up)."""
    den = ref.height * ref.height
    kbps = max(MIN_VIDEO_KBPS, (ref.video_kbps * height * height + den // 2) // den)
    name = f"{height}p" if f"{height}p" not in taken else f"{height}p-source"
    return name, height, kbps, audio_kbps
