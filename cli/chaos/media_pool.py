"""Files the chaos workload uploads: a few tiny generated clips, each upload made unique.

Valid uploads are a pooled clip remuxed (``-c copy``, ~30 ms) with a random ``comment`` tag, so
no two uploads share bytes (a mixed-up source cannot hide behind an identical twin). Invalid
uploads are seeded random bytes.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

__all__ = ["MediaPool", "ffmpeg_exe"]

# (seconds, size): tiny, so a 3-rendition transcode takes about a second.  The 10 s clip is long
# enough to be cut in chunks where the cluster says `processing: {chunked: true, chunk_segments: 2}`
# (5 segments: chunks of 4, 4 and 2 s, and the audio unit), so chaos covers cooperative processing.
CLIPS = [(2, "320x240"), (3, "320x180"), (4, "256x144"), (10, "256x144")]


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg(args: list[str]) -> None:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                          capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg: {proc.stderr.decode(errors='replace')[-1000:]}")


class MediaPool:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clips: list[Path] = []
        for i, (seconds, size) in enumerate(CLIPS):
            path = self.dir / f"clip{i}.mp4"
            if not path.exists() or path.stat().st_size == 0:
                tmp = path.with_suffix(".tmp.mp4")
                _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
                         "-f", "lavfi", "-i", f"sine=frequency={440 + 110 * i}:sample_rate=44100:duration={seconds}",
                         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
                         "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(tmp)])
                tmp.replace(path)
            self.clips.append(path)

    def make(self, rng: random.Random, name: str, valid: bool) -> Path:
        """A fresh file for one upload, named ``name`` in the pool's directory (caller deletes it)."""
        path = self.dir / name
        if valid:
            clip = rng.choice(self.clips)
            _ffmpeg(["-i", str(clip), "-c", "copy", "-metadata", f"comment={rng.getrandbits(64):x}",
                     "-movflags", "+faststart", str(path)])
        else:
            path.write_bytes(rng.randbytes(rng.randint(2_000, 120_000)))
        return path
