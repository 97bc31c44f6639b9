"""Video ids and where everything lives in the bucket.

    videos/<id>/record.json          the record: the commit point (CAS only)
    videos/<id>/source               the uploaded bytes (visible only after CompleteMultipartUpload)
    videos/<id>/out/<epoch>/...      one processing attempt's outputs (playlists, segments,
                                     poster.jpg); `ready` names the epoch
    videos/<id>/tus/...              resumable-upload scratch (small tail objects)
    videos/<id>/units/<unit>.json    a chunked video's unit of work (a chunk, or "audio"): lease,
                                     epoch, committed output (CAS only; node/chunks/state.py)
    videos/<id>/chunks/<unit>/<epoch>/...  one attempt of one unit: <rendition>/seg_NNNNN.ts
                                     (global segment numbers; chunk 0 also poster.jpg);
                                     only the epoch the unit's
                                     document commits is ever listed or served
    pending/<id>                     index of non-terminal videos, so recovery never scans videos/
    catalog/<id>                     index of every video, for listing (ids sort by creation time)
    idem/<sha256 of key>             Idempotency-Key -> video id
    webhooks/outbox/<id>/<event id>  an event still to deliver (node/records/outbox.py)
    webhooks/dead/<id>/<event id>    an event given up

Ids are 26 characters of lowercase base32: 48 bits of milliseconds then 80
random bits, so they sort by creation time and never collide in practice.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time

# Matched whole (fullmatch): "$" would also accept a trailing newline.
ID_RE = re.compile(r"[a-z2-7]{26}")
SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]{1,32}/seg_[0-9]{5}\.ts")
PLAYLIST_RE = re.compile(r"master\.m3u8|[A-Za-z0-9_-]{1,32}/index\.m3u8")
POSTER = "poster.jpg"  # the video's poster image (node/process/poster.py), beside its HLS outputs


def new_id(now: float | None = None) -> str:
    ms = int((time.time() if now is None else now) * 1000)
    raw = ms.to_bytes(6, "big") + os.urandom(10)
    return base64.b32encode(raw).decode().lower().rstrip("=")


def valid_id(video_id: str) -> bool:
    return ID_RE.fullmatch(video_id) is not None


def valid_hls_path(path: str) -> bool:
    return PLAYLIST_RE.fullmatch(path) is not None or SEGMENT_RE.fullmatch(path) is not None


def valid_output_path(path: str) -> bool:
    """A committed output playback may read: an HLS path, or the poster."""
    return path == POSTER or valid_hls_path(path)


def record_key(vid: str) -> str:
    return f"videos/{vid}/record.json"


def source_key(vid: str) -> str:
    return f"videos/{vid}/source"


def out_prefix(vid: str, epoch: int | None = None) -> str:
    return f"videos/{vid}/out/" if epoch is None else f"videos/{vid}/out/{epoch}/"


def units_prefix(vid: str) -> str:
    return f"videos/{vid}/units/"


def unit_doc_key(vid: str, unit: str) -> str:
    return f"videos/{vid}/units/{unit}.json"


def chunk_out_prefix(vid: str, unit: str | None = None, epoch: int | None = None) -> str:
    """Outputs of every unit, of one unit, or of one unit's attempt ``epoch``."""
    if unit is None:
        return f"videos/{vid}/chunks/"
    return f"videos/{vid}/chunks/{unit}/" if epoch is None else f"videos/{vid}/chunks/{unit}/{epoch}/"


def hls_object_key(vid: str, rec: dict, path: str) -> str:
    """The storage key of output ``path`` (``valid_output_path``) of a ``ready`` record.

    Playlists, and every object of a video processed in one run, are under
    ``out/<ready_epoch>/``.  A chunked video's segments stay where their unit committed them:
    the record's ``segments_from`` (written by the `ready` commit) names each unit's committed
    epoch, and segment number k of a video rendition belongs to chunk
    ``min(k // chunk_segments, chunks - 1)``; the ``audio`` rendition is the ``audio`` unit;
    the poster (``POSTER``) is chunk 0's.
    Pure; a unit the record does not name maps to ``out/`` (which holds no segment: 404)."""
    chunked = rec.get("segments_from")
    if chunked and path == POSTER:
        epoch = chunked["units"].get("00000")
        if epoch is not None:
            return chunk_out_prefix(vid, "00000", epoch) + path
    if chunked and path.endswith(".ts"):
        rendition, _, name = path.partition("/")
        number = int(name[4:9])
        unit = "audio" if rendition == "audio" else (
            f"{min(number // chunked['chunk_segments'], chunked['chunks'] - 1):05d}")
        epoch = chunked["units"].get(unit)
        if epoch is not None:
            return chunk_out_prefix(vid, unit, epoch) + path
    return out_prefix(vid, rec["ready_epoch"]) + path


def video_prefix(vid: str) -> str:
    return f"videos/{vid}/"


def pending_key(vid: str) -> str:
    return f"pending/{vid}"


def catalog_key(vid: str) -> str:
    return f"catalog/{vid}"


def idem_key(client_key: str) -> str:
    return "idem/" + hashlib.sha256(client_key.encode()).hexdigest()
