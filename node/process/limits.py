"""Media limits: the checks of a source against ``media:`` and the bounds of one ffmpeg run.

Pure functions (no I/O), table-tested in tests/unit/node/process/test_media_limits.py:

- ``check_frame_size``, ``check_fps``, ``check_duration``, ``check_frames``: raise
  ``MediaLimitExceeded`` naming the limit and its value, e.g.
  "duration 36001 s is over media.max_duration_s (21600 s)". ``node.process.probe`` calls them
  from the container's headers and timestamps *before* decoding a frame (and the frame size
  again after the first frame, for the display size).
- ``run_bounds(duration, limits) -> RunBounds``: what one ffmpeg run may read, write and cost::

      read_seconds = min(max_duration_s, duration + max(10 s, 5% of duration))   (input -t)
      max_frames   = min(frame_limit, ceil(read_seconds * max_fps))              (-frames:v)
      wall_seconds = wall_time_factor * duration + wall_time_base_s             (then SIGKILL)
      memory_bytes = ffmpeg_memory                                                (RLIMIT_DATA)

  The read limit is where a file whose timestamps lie stops: input past it is never read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from node.config import GiB, MiB, MediaLimits
from node.process.errors import MediaLimitExceeded

READ_MARGIN_S = 10.0  # input read past the probed duration, at least ...
READ_MARGIN_FRACTION = 0.05  # ... or this share of it


def num(x: float) -> str:
    """12.0 -> "12", 29.97 -> "29.97", 36001.4 -> "36001"."""
    if x >= 100 or float(x).is_integer():
        return str(int(round(x)))
    return f"{x:.2f}".rstrip("0").rstrip(".")


def size(n: int) -> str:
    """Bytes as the config writes them: 2147483648 -> "2 GiB"."""
    if n % GiB == 0:
        return f"{n // GiB} GiB"
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    return f"{n} bytes"


def _at_most(value: float, limit: float, key: str, what: str, unit: str = "") -> None:
    """Raise MediaLimitExceeded("<key>", "<what> is over media.<key> (<limit><unit>)") past it."""
    if value > limit:
        raise MediaLimitExceeded(key, f"{what} is over media.{key} ({num(limit)}{unit})")


def check_frame_size(width: int, height: int, limits: MediaLimits) -> None:
    _at_most(width, limits.max_width, "max_width", f"frame width {width} px ({width}x{height})", " px")
    _at_most(height, limits.max_height, "max_height", f"frame height {height} px ({width}x{height})", " px")
    _at_most(width * height, limits.max_pixels, "max_pixels",
             f"frame size {width}x{height} ({width * height} pixels)")


def check_fps(fps: float, limits: MediaLimits) -> None:
    _at_most(fps, limits.max_fps, "max_fps", f"frame rate {num(fps)} fps", " fps")


def check_duration(duration: float, limits: MediaLimits, *, what: str = "duration") -> None:
    _at_most(duration, limits.max_duration_s, "max_duration_s", f"{what} {num(duration)} s", " s")


def check_frames(frames: int, limits: MediaLimits) -> None:
    if frames > limits.frame_limit:  # the key names the setting; the limit may be derived from others
        raise MediaLimitExceeded("max_frames", f"{frames} video frames is over media.max_frames "
                                               f"({limits.frame_limit})")


@dataclass(frozen=True)
class RunBounds:
    """What one ffmpeg run may read and cost (see the module docstring for the formulas)."""

    read_seconds: float  # input option -t: nothing past this is read
    max_frames: int  # output option -frames:v, per rendition
    wall_seconds: float  # ffmpeg is killed after this: MediaLimitExceeded("wall_time_factor")
    memory_bytes: int  # RLIMIT_DATA set in the child before exec

    def wall_time_exceeded(self, duration: float, limits: MediaLimits) -> MediaLimitExceeded:
        return MediaLimitExceeded(
            "wall_time_factor",
            f"transcoding took longer than {num(self.wall_seconds)} s: media.wall_time_factor "
            f"({num(limits.wall_time_factor)}) x duration {num(duration)} s + "
            f"media.wall_time_base_s ({num(limits.wall_time_base_s)} s)")

    def memory_exceeded(self) -> MediaLimitExceeded:
        return MediaLimitExceeded("ffmpeg_memory", "transcoding needed more memory than "
                                                   f"media.ffmpeg_memory ({size(self.memory_bytes)})")


def run_bounds(duration: float, limits: MediaLimits) -> RunBounds:
    """Bounds of the ffmpeg run for a source of ``duration`` seconds (already checked)."""
    if duration < 0:
        raise ValueError(f"negative duration {duration}")
    read = min(limits.max_duration_s, duration + max(READ_MARGIN_S, duration * READ_MARGIN_FRACTION))
    return RunBounds(
        read_seconds=read,
        max_frames=min(limits.frame_limit, math.ceil(read * limits.max_fps)),
        wall_seconds=limits.wall_time_factor * duration + limits.wall_time_base_s,
        memory_bytes=limits.ffmpeg_memory,
    )
