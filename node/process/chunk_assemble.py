"""The playlists of a chunked video, stitched from its committed units (pure text out).

The video's owner calls :func:`assemble` once every unit is committed, uploads what it returns
under ``out/<video epoch>/`` (the master last) and commits ``ready``: the single commit point
stays.  Per video rendition the media playlist is the committed chunks' EXTINF lists in chunk
order under one header (``node.process.master_playlist.media_playlist``); segment URIs keep
their global numbers (``seg_NNNNN.ts``), and playback finds each segment under the epoch its
unit committed (``node.records.layout.hls_object_key``).  The audio rendition is the ``audio``
unit's list.  The master names one audio group shared by every variant.

BANDWIDTH of a variant is the larger of the ladder's nominal figure and the measured peak of
its video segments plus the audio's measured peak (RFC 8216 4.3.4.2: the variant's whole
media); AVERAGE-BANDWIDTH is total bits over the duration, video plus audio.

Invariant: only ``output`` of committed units is read, and it names the epoch it was written
under, so a stale epoch's segments can never be named by a playlist.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from node.chunks import state
from node.chunks.plan import Plan
from node.process import ffmpeg
from node.process.chunk_encode import AUDIO_NAME, rendition_plans
from node.process.errors import TranscodeError
from node.process.master_playlist import MASTER_NAME, MEDIA_NAME, master_playlist, media_playlist


def assemble(plan: Plan, docs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """``({relative path: playlist text}, renditions for the record)``; the master is the last key.

    Raises TranscodeError when a unit is missing, not committed, or its output does not match
    the plan (segment numbers, count): the owner then does not commit."""
    by_unit = {d["unit"]: d for d in docs}
    outputs = []
    for c in plan.chunks:
        d = by_unit.get(state.unit_name(c.index))
        if d is None or d["state"] != state.COMMITTED:
            raise TranscodeError(f"chunk {c.index} is not committed")
        out = d["output"]
        if out["first_segment"] != c.first_segment or len(out["durations"]) != c.segments:
            raise TranscodeError(f"chunk {c.index}: committed segments do not match the plan")
        outputs.append(out)
    audio = None
    if plan.has_audio:
        d = by_unit.get(state.AUDIO)
        if d is None or d["state"] != state.COMMITTED:
            raise TranscodeError("the audio is not committed")
        audio = d["output"]
    files: dict[str, str] = {}
    entries = [(ffmpeg.SEGMENT_NAME % (o["first_segment"] + k), dur)
               for o in outputs for k, dur in enumerate(o["durations"])]
    seconds = sum(dur for _, dur in entries)
    audio_peak = audio_avg = 0
    if audio is not None:
        files[f"{AUDIO_NAME}/{MEDIA_NAME}"] = media_playlist(
            [(ffmpeg.SEGMENT_NAME % k, dur) for k, dur in enumerate(audio["durations"])])
        a = audio["renditions"][AUDIO_NAME]
        audio_peak = a["peak_bps"]
        audio_avg = math.ceil(a["bits"] / max(sum(audio["durations"]), 1e-9))
    final, codecs = [], {}
    for p in rendition_plans(plan):
        stats = [o["renditions"][p.name] for o in outputs]
        peak = max(s["peak_bps"] for s in stats) + audio_peak
        average = math.ceil(sum(s["bits"] for s in stats) / max(seconds, 1e-9)) + audio_avg
        final.append(replace(p, bandwidth=max(p.bandwidth, peak), average_bandwidth=average))
        codecs[p.name] = (stats[0].get("codecs") or p.video_codec) + (",mp4a.40.2" if audio else "")
        files[f"{p.name}/{MEDIA_NAME}"] = media_playlist(entries)
    files[MASTER_NAME] = master_playlist(
        final, codecs, audio_uri=f"{AUDIO_NAME}/{MEDIA_NAME}" if audio is not None else None)
    renditions = [{"name": p.name, "width": p.width, "height": p.height, "bandwidth": p.bandwidth}
                  for p in final]
    return files, renditions
