"""HLS playlists we write or read ourselves (pure text in, text out).

- ``master_playlist(plans, codecs)``: the multivariant playlist. ffmpeg writes
  the media playlists; we write the master so BANDWIDTH, RESOLUTION and
  CODECS are ours to state (RFC 8216 section 4.3.4.2)::

      #EXTM3U
      #EXT-X-VERSION:3
      #EXT-X-INDEPENDENT-SEGMENTS
      #EXT-X-STREAM-INF:BANDWIDTH=..,AVERAGE-BANDWIDTH=..,RESOLUTION=WxH,CODECS="avc1.4d401f,mp4a.40.2",NAME="360p"
      360p/index.m3u8

  Variants are listed in ladder order, lowest first.
- ``media_playlist(entries)``: a VOD media playlist from (URI, seconds) pairs in order: how a
  chunked video's renditions are stitched from its committed chunks.
- ``parse_media_playlist(text)``: the few facts of a VOD media playlist that
  the alignment check needs (segment URIs, EXTINF durations, ENDLIST).
- ``measured_bandwidth(sizes, durations)``: peak and average bits/s over the
  segments as RFC 8216 defines BANDWIDTH and AVERAGE-BANDWIDTH.

Raises ``ValueError`` on a playlist it cannot read; node/process/ffmpeg.py translates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from node.process.ladder import RenditionPlan

HLS_VERSION = 3
MASTER_NAME = "master.m3u8"
MEDIA_NAME = "index.m3u8"
AUDIO_GROUP = "aud"  # GROUP-ID of a chunked video's one audio rendition


def media_uri(plan: RenditionPlan) -> str:
    """The master's relative URI of a rendition's media playlist."""
    return f"{plan.name}/{MEDIA_NAME}"


def master_playlist(plans: Sequence[RenditionPlan], codecs: str | Mapping[str, str], *,
                    audio_uri: str | None = None) -> str:
    """The master playlist text.

    ``codecs`` is either one CODECS value for every variant or a mapping from
    rendition name to its value (``{p.name: p.codecs() for p in plans}``).
    ``audio_uri``: the media playlist of one audio rendition shared by every variant
    (a chunked video's audio, encoded once): an ``EXT-X-MEDIA`` group ``AUDIO_GROUP`` that
    every ``EXT-X-STREAM-INF`` names; the variants then carry no audio of their own.
    """
    if not plans:
        raise ValueError("a master playlist needs at least one rendition")
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio_uri is not None:
        if '"' in audio_uri:
            raise ValueError("quoted attribute values cannot contain '\"'")
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="audio",DEFAULT=YES,'
                     f'AUTOSELECT=YES,CHANNELS="2",URI="{audio_uri}"')
    for p in plans:
        c = codecs if isinstance(codecs, str) else codecs[p.name]
        if '"' in c or '"' in p.name:
            raise ValueError("quoted attribute values cannot contain '\"'")
        group = f',AUDIO="{AUDIO_GROUP}"' if audio_uri is not None else ""
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={p.bandwidth},AVERAGE-BANDWIDTH={p.average_bandwidth},"
            f'RESOLUTION={p.width}x{p.height},CODECS="{c}",NAME="{p.name}"{group}')
        lines.append(media_uri(p))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class MediaPlaylist:
    segments: tuple[str, ...]  # URIs, in order
    durations: tuple[float, ...]  # EXTINF seconds, same order
    target_duration: int | None
    endlist: bool
    playlist_type: str | None

    @property
    def total_seconds(self) -> float:
        return sum(self.durations)


def media_playlist(entries: Sequence[tuple[str, float]]) -> str:
    """A VOD media playlist of ``entries`` (URI, EXTINF seconds) in order, one ENDLIST.

    TARGETDURATION is the longest EXTINF rounded to the nearest integer (RFC 8216 4.3.3.1:
    every EXTINF, rounded, is at most the target); no EXT-X-DISCONTINUITY: the stitched
    chunks' timestamps are continuous by construction (node/process/chunk_encode.py)."""
    if not entries:
        raise ValueError("a media playlist needs at least one segment")
    target = max(1, max(math.floor(d + 0.5) for _, d in entries))
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", f"#EXT-X-TARGETDURATION:{target}",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for uri, d in entries:
        if "\n" in uri or uri.startswith("#"):
            raise ValueError(f"bad segment URI {uri!r}")
        lines += [f"#EXTINF:{d:.6f},", uri]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Segments and durations of a media playlist; ValueError if it is not one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an M3U8 playlist (no #EXTM3U header)")
    segments: list[str] = []
    durations: list[float] = []
    pending: float | None = None
    target = None
    endlist = False
    ptype = None
    for ln in lines[1:]:
        if ln.startswith("#EXTINF:"):
            try:
                pending = float(ln[len("#EXTINF:"):].split(",", 1)[0])
            except ValueError:
                raise ValueError(f"bad EXTINF line {ln!r}") from None
        elif ln.startswith("#EXT-X-TARGETDURATION:"):
            target = int(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-PLAYLIST-TYPE:"):
            ptype = ln.split(":", 1)[1]
        elif ln == "#EXT-X-ENDLIST":
            endlist = True
        elif ln.startswith("#EXT-X-STREAM-INF"):
            raise ValueError("a master playlist, not a media playlist")
        elif not ln.startswith("#"):
            if pending is None:
                raise ValueError(f"segment {ln!r} without #EXTINF")
            segments.append(ln)
            durations.append(pending)
            pending = None
    return MediaPlaylist(tuple(segments), tuple(durations), target, endlist, ptype)


def measured_bandwidth(sizes: Sequence[int], durations: Sequence[float]) -> tuple[int, int]:
    """(peak, average) bits/s: the largest per-segment bitrate and total bits / total seconds.

    Segments shorter than 0.5 s (a stub at the end of a video) are left out of the
    peak: their few bytes over a tiny duration say nothing about the channel.
    """
    if len(sizes) != len(durations) or not sizes:
        raise ValueError("need one duration per segment, and at least one segment")
    total = sum(durations)
    average = math.ceil(sum(sizes) * 8 / total) if total > 0 else 0
    rates = [s * 8 / d for s, d in zip(sizes, durations) if d >= 0.5]
    peak = math.ceil(max(rates)) if rates else average
    return max(peak, average), average
