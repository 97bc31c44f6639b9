"""The main job's sample input: a short test video made by the ffmpeg that imageio-ffmpeg ships."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import CliError

__all__ = ["sample_command", "make_sample"]


def sample_command(ffmpeg: str, out: Path, *, seconds: float = 10.0, size: str = "1280x720",
                   rate: int = 30) -> list[str]:
    """ffmpeg arguments for a test pattern (lavfi testsrc2) with a 440 Hz tone, H.264 + AAC in MP4."""
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(rate * 2),
        "-c:a", "aac", "-b:a", "96k", "-shortest", "-movflags", "+faststart", str(out),
    ]


def make_sample(out: Path, *, seconds: float = 10.0, size: str = "1280x720") -> Path:
    """Write the sample video to ``out`` (kept if it already exists) and return the path."""
    if out.exists() and out.stat().st_size > 0:
        return out
    import imageio_ffmpeg

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.mp4")
    cmd = sample_command(imageio_ffmpeg.get_ffmpeg_exe(), tmp, seconds=seconds, size=size)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CliError(f"ffmpeg could not make the sample video: {e}") from None
    if done.returncode != 0:
        raise CliError(f"ffmpeg could not make the sample video:\n{done.stderr.strip()[-2000:]}")
    tmp.replace(out)
    return out
