"""The chunk plan of one video: where it is cut, and every encoder setting, fixed once.

Pure: no I/O, no clock.  The video's owner makes the plan after probing the source
(:func:`make_plan`) and stores it in the video record by CAS (``node.chunks.store``); every node
that encodes a chunk reads it back (:func:`Plan.from_doc`) and uses only what it says, so all
chunks of one video are encoded alike whichever node, version or config encodes them.

Invariants (tested in tests/unit/node/chunks/test_chunk_plan.py):

* every chunk but the last is exactly ``chunk_segments`` whole segments long, and starts on the
  segment grid: ``start = index * chunk_segments * segment_seconds``; the last chunk ends at the
  probed duration and is never shorter than half a chunk (a short tail joins the chunk before);
* the chunks tile ``[0, duration)``: no gap, no overlap;
* a video no longer than ``1.5 * chunk_segments`` segments is one chunk (``Plan.single``): it
  stays on the whole-video path, which costs no more than today's;
* a chunk's keyframe times are the segment grid relative to its start (``0, s, 2s, ...``),
  so its segments line up across renditions and with the whole-video run's;
* every chunk's output timestamps are ``start + TS_OFFSET`` (the measured recipe: one constant
  for all chunks, so the B-frame delay of chunk 0 does not make pts jump back at a border).

Segment numbering is global: chunk ``i`` writes ``seg_<first_segment + k>``, so the stitched
media playlist of a rendition is the committed chunks' segment lists in order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PLAN_FORMAT = 1  # Invariant: a node refuses a plan whose format is newer than this
TS_OFFSET = 1.0  # seconds added to every output timestamp (the same for all chunks)
SINGLE_FACTOR = 1.5  # videos up to this many chunks long are one chunk
EPSILON = 1e-6  # durations within this of a grid line count as on it


class PlanError(ValueError):
    """A plan cannot be made from these numbers, or a stored plan cannot be read."""


@dataclass(frozen=True)
class ChunkRange:
    """One chunk: a time range of the source, a whole number of segments (the last one: the rest)."""

    index: int
    start: float  # seconds into the source; on the segment grid
    duration: float
    first_segment: int  # global number of its first segment
    segments: int  # how many segments it makes (the last one may be shorter than the grid)

    @property
    def end(self) -> float:
        return self.start + self.duration

    def keyframe_times(self, segment_seconds: float) -> list[float]:
        """Forced keyframes, relative to the chunk start: the segment grid, ``0, s, ... < duration``."""
        return [k * segment_seconds for k in range(self.segments)]


@dataclass(frozen=True)
class Encoder:
    """The encoder settings every chunk of the video uses (the same argv but for its range)."""

    preset: str
    threads: int  # 1: the same chunk encoded twice is byte-identical (measured)
    segment_seconds: int
    ts_offset: float = TS_OFFSET
    video_codec: str = "libx264"
    audio_codec: str = "aac"
    audio_rate: int = 48000
    audio_channels: int = 2


@dataclass(frozen=True)
class Plan:
    """Where a video is cut and how every chunk is encoded.  Stored in the video record."""

    duration: float
    chunk_segments: int
    encoder: Encoder
    renditions: tuple[Mapping[str, Any], ...]  # the ladder: node.process.ladder.RenditionPlan fields
    has_audio: bool
    audio_kbps: int  # the one audio rendition's bitrate (encoded once for the whole video)
    source: Mapping[str, Any] = field(default_factory=dict)  # video/audio stream, container
    chunks: tuple[ChunkRange, ...] = ()
    made_by_epoch: int = 0  # the video epoch that made the plan (chunk docs name it)
    format: int = PLAN_FORMAT

    @property
    def single(self) -> bool:
        return len(self.chunks) == 1

    @property
    def segment_count(self) -> int:
        return sum(c.segments for c in self.chunks)

    def chunk_of_segment(self, number: int) -> int:
        """Index of the chunk that writes global segment ``number`` (ValueError if none)."""
        if number < 0 or number >= self.segment_count:
            raise ValueError(f"segment {number} is outside the plan (0..{self.segment_count - 1})")
        return min(number // self.chunk_segments, len(self.chunks) - 1)

    # ---- stored form ---------------------------------------------------------------------------
    def to_doc(self) -> dict[str, Any]:
        return {
            "format": self.format, "duration": self.duration, "chunk_segments": self.chunk_segments,
            "encoder": dataclasses.asdict(self.encoder),
            "renditions": [dict(r) for r in self.renditions], "has_audio": self.has_audio,
            "audio_kbps": self.audio_kbps, "source": dict(self.source),
            "made_by_epoch": self.made_by_epoch,
            "chunks": [[c.start, c.duration, c.first_segment, c.segments] for c in self.chunks],
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> "Plan":
        """The plan a record stores; raises PlanError on a newer format or a malformed document."""
        fmt = doc.get("format")
        if not isinstance(fmt, int) or fmt > PLAN_FORMAT:
            raise PlanError(f"plan format {fmt!r} is newer than this node knows ({PLAN_FORMAT})")
        try:
            chunks = tuple(ChunkRange(i, float(s), float(d), int(f), int(n))
                           for i, (s, d, f, n) in enumerate(doc["chunks"]))
            return cls(duration=float(doc["duration"]), chunk_segments=int(doc["chunk_segments"]),
                       encoder=Encoder(**doc["encoder"]),
                       renditions=tuple(dict(r) for r in doc["renditions"]),
                       has_audio=bool(doc["has_audio"]), audio_kbps=int(doc["audio_kbps"]),
                       source=dict(doc.get("source") or {}), chunks=chunks,
                       made_by_epoch=int(doc.get("made_by_epoch", 0)), format=fmt)
        except (KeyError, TypeError, ValueError) as e:
            raise PlanError(f"malformed plan: {e}") from None


def segment_count(duration: float, segment_seconds: float) -> int:
    """Segments a video of ``duration`` makes on the grid (the last one may be shorter)."""
    if duration <= 0:
        raise PlanError(f"duration {duration} is not positive")
    if segment_seconds <= 0:
        raise PlanError(f"segment length {segment_seconds} is not positive")
    return max(1, math.ceil(duration / segment_seconds - EPSILON))


def cut(duration: float, segment_seconds: int, chunk_segments: int) -> tuple[ChunkRange, ...]:
    """The chunk boundaries (see the module's invariants)."""
    if chunk_segments < 1:
        raise PlanError(f"chunk_segments {chunk_segments} is below 1")
    total = segment_count(duration, segment_seconds)
    if total <= SINGLE_FACTOR * chunk_segments:
        return (ChunkRange(0, 0.0, duration, 0, total),)
    n = total // chunk_segments
    if total - n * chunk_segments >= chunk_segments / 2:
        n += 1  # the tail is a chunk of its own; else it joins the last full chunk
    out = []
    for i in range(n):
        first = i * chunk_segments
        start = first * segment_seconds
        segs = chunk_segments if i < n - 1 else total - first
        dur = segs * segment_seconds if i < n - 1 else duration - start
        out.append(ChunkRange(i, float(start), float(dur), first, segs))
    return tuple(out)


def make_plan(*, duration: float, segment_seconds: int, chunk_segments: int, chunked: bool,
              renditions: Sequence[Mapping[str, Any]], has_audio: bool, preset: str,
              source: Mapping[str, Any] | None = None, made_by_epoch: int = 0) -> Plan:
    """The plan of a probed source.  ``chunked=False`` (config off) always makes one chunk.

    ``renditions``: the ladder's rungs as mappings (name, width, height, rates, level...);
    the audio rendition takes the highest ``audio_kbps`` among them.
    """
    if not renditions:
        raise PlanError("no renditions to encode")
    if any(r.get("name") == "audio" for r in renditions):
        raise PlanError("a video rendition may not be named 'audio' (the audio rendition's name)")
    chunks = (cut(duration, segment_seconds, chunk_segments) if chunked else
              (ChunkRange(0, 0.0, duration, 0, segment_count(duration, segment_seconds)),))
    audio = max((int(r.get("audio_kbps") or 0) for r in renditions), default=0) if has_audio else 0
    return Plan(duration=float(duration), chunk_segments=chunk_segments if len(chunks) > 1 else chunks[0].segments,
                encoder=Encoder(preset=preset, threads=1, segment_seconds=segment_seconds),
                renditions=tuple(dict(r) for r in renditions), has_audio=has_audio,
                audio_kbps=audio or (128 if has_audio else 0), source=dict(source or {}),
                chunks=chunks, made_by_epoch=made_by_epoch)
