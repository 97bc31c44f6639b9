"""The poster: one JPEG frame of a video, made while it is processed and served like its HLS
outputs (``GET /v1/videos/<id>/poster.jpg``, immutable, from any node).

Who makes it, and where it goes:

- a video processed in one run: its worker, from the local copy of the source it transcoded,
  into ``out/<epoch>/poster.jpg`` beside the playlists (uploaded before the master);
- a chunked video: the holder of chunk 0, from the same presigned URL it encoded from (one more
  ranged read near the start), into ``chunks/00000/<epoch>/poster.jpg``; the chunk's commit says
  ``poster: true`` and the video's ``ready`` commit copies it.  ``node.records.layout
  .hls_object_key`` maps ``poster.jpg`` to chunk 0's committed epoch, so a stale epoch's poster
  is never served, as for segments.

The frame: at 10% of the duration, at most 5 s in (a title card or a fade from black is
usually shorter; a still from the middle would need a second read of a far range), inside
chunk 0 for a chunked video.  Scaled to square pixels, then to at most 720 lines, as JPEG.

A poster is decoration: when ffmpeg cannot make one (a source whose first seconds do not
decode, a deadline) the caller logs ``poster_failed`` and the video is committed without it
(``poster: false``; ``/poster.jpg`` answers 404).  A storage error uploading it is a storage
error of the attempt, as for any output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from node.config import MediaLimits
from node.process import ffmpeg
from node.process.errors import TranscodeError
from node.process.limits import run_bounds

POSTER_NAME = "poster.jpg"
POSTER_MAX_HEIGHT = 720
POSTER_AT_SHARE = 0.10  # of the duration ...
POSTER_AT_MAX = 5.0  # ... but at most this many seconds in
POSTER_QUALITY = 3  # mjpeg -q:v, 2 (best) .. 31
POSTER_LENGTH = 1.0  # seconds of source a poster run is bounded as (run_bounds)


def poster_time(duration: float | None, *, within: float | None = None) -> float:
    """Seconds into the source of the poster's frame (pure): 10% in, at most 5 s, and at least
    half a second before ``within`` (chunk 0's end) when given."""
    at = min(max(duration or 0.0, 0.0) * POSTER_AT_SHARE, POSTER_AT_MAX)
    if within is not None:
        at = min(at, max(0.0, within - 0.5))
    return round(max(0.0, at), 3)


def poster_command(src: str | os.PathLike[str], out_file: str | os.PathLike[str], at: float, *,
                   container: str | None = None, video_stream: int | None = None,
                   formats: Sequence[str] = MediaLimits().formats,
                   ffmpeg_path: str | None = None) -> list[str]:
    """The argv writing the frame at ``at`` s of ``src`` (a local path or an http(s) URL) to
    ``out_file`` as JPEG (pure).  The input is fenced as every other run's: protocol and format
    whitelists, the probed container named with ``-f``."""
    cmd = ffmpeg.input_head(src, formats, container=container, ffmpeg_path=ffmpeg_path)
    vin = f"0:{video_stream}" if video_stream is not None else "0:v:0"
    cmd += ["-ss", f"{at:.3f}", "-i", str(src), "-map", vin, "-an", "-sn", "-dn",
            "-frames:v", "1",
            "-vf", (f"scale=w='trunc(iw*sar/2)*2':h=ih,setsar=1,"
                    f"scale=w=-2:h='min({POSTER_MAX_HEIGHT},ih)'"),
            "-q:v", str(POSTER_QUALITY), "-map_metadata", "-1",
            "-f", "image2", "-update", "1", str(out_file)]
    return cmd


async def make_poster(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], at: float, *,
                      container: str | None = None, video_stream: int | None = None,
                      limits: MediaLimits = MediaLimits(),
                      ffmpeg_path: str | None = None) -> Path:
    """Write ``out_dir/poster.jpg``; a frame at ``at`` s, or at 0 s when nothing decodes there
    (a duration that overstated the video).  Raises what ``node.process.ffmpeg.run`` raises,
    and TranscodeError when no frame came out at all."""
    out = Path(out_dir) / POSTER_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    bounds = run_bounds(POSTER_LENGTH, limits)
    tries = list(dict.fromkeys((at, 0.0)))  # at, then 0 s once (never twice the same)
    for k, when in enumerate(tries):
        out.unlink(missing_ok=True)
        cmd = poster_command(src, out, when, container=container, video_stream=video_stream,
                             formats=limits.formats, ffmpeg_path=ffmpeg_path)
        try:
            # nothing decoded after `when`: ffmpeg exits non-zero ("Nothing was written")
            await ffmpeg.run(cmd, bounds, duration=None, length=POSTER_LENGTH, limits=limits)
        except TranscodeError:
            if k == len(tries) - 1:
                raise
            continue
        if out.is_file() and out.stat().st_size > 0:
            return out
    raise TranscodeError("the poster: ffmpeg wrote no frame")
