"""The tus 1.0.0 upload state: every rule of a resumable upload lives here, pure.

The state is the ``upload`` field of the video record (the video id is the tus upload id)::

    upload = {
      "upload_id":  S3 multipart upload id of videos/<id>/source,
      "part_size":  the smallest part (but the last), fixed at creation,
      "length":     Upload-Length,
      "offset":     the durable offset: every byte below it is in storage,
      "parts":      [{"n", "etag", "size"}] the durable parts in byte order, numbers ascending,
      "tail":       {"key", "size"} or None: the bytes after the last part, up to ``offset``,
      "metadata":   Upload-Metadata, decoded,
      "expires_at": reclaimed after this unless a PATCH moves it on,
      "lock":       {"holder", "request", "expires", "first", "last"} or None: the PATCH in
                    progress and the part numbers it may write,
      "reserved":   the highest part number any lock was given (absent in older records),
    }

Invariants (checked by :func:`check_invariants`, kept by every function here):
- ``offset == sum(part sizes) + tail.size``; part numbers ascend within ``1..reserved``; every part is at least
  ``part_size`` bytes and the tail is shorter than ``part_size``, except after the final PATCH,
  where ``offset == length``, there is no tail and only the last part may be short.
- Parts are cut by :func:`cut_size`: a PATCH whose length is known (Content-Length) becomes whole
  parts of ``part_size`` and one last part of up to ``2 * part_size - 1`` bytes, so it needs no
  tail (S3 takes parts of any size >= 5 MiB); only a PATCH shorter than ``part_size`` (or of
  unknown length) leaves a tail, which the next PATCH's first part starts with.
- Every lock gets part numbers of its own (``lock.first..lock.last``, after ``reserved``; see
  :func:`take_lock`), so no two PATCHes ever write the same part number.  Parts staged by a
  PATCH that then failed (or by one that lost its lock) are left out of CompleteMultipartUpload,
  which drops them; they never need cleaning up.
- Records written before parts could exceed ``part_size`` (every part exactly ``part_size``,
  the tail ``offset % part_size``) satisfy these invariants: they are read and continued as is.
- At most one PATCH holds the lock; the offset moves only by a CAS made by the lock holder that
  also checks the offset it started from.

Functions take the record and ``now`` and return the next record, or raise a refusal from
:mod:`node.upload.errors` that says why (the HTTP edge turns it into the protocol's answer).  The
caller writes by CAS.
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
import re
from typing import Any, Callable

from storage import MAX_PARTS, MIN_PART

from node.records import lifecycle
from node.records.lifecycle import Record
from node.upload.errors import (BeyondUploadLength, ChecksumAlgorithmUnsupported, HeaderMalformed,
                                HeaderMissing, LockLost, OffsetMismatch, UploadComplete, UploadExhausted,
                                UploadFull, UploadGone, UploadIncomplete, UploadLocked, UploadNotFound,
                                UploadTooLarge, TusVersionMissing, TusVersionUnsupported, WrongContentType)

TUS_VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "termination", "checksum", "expiration")
CHECKSUM_ALGORITHMS = ("sha1",)
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
MAX_METADATA = 4096  # bytes of Upload-Metadata header we accept

_INT_RE = re.compile(r"^[0-9]{1,19}$")


# ---- headers ------------------------------------------------------------------------------------

def check_version(header: str | None) -> None:
    """Every request but OPTIONS carries ``Tus-Resumable: 1.0.0``."""
    if header is None:
        raise TusVersionMissing(f"send 'Tus-Resumable: {TUS_VERSION}'")
    if header.strip() != TUS_VERSION:
        raise TusVersionUnsupported(f"Tus-Resumable {header.strip()!r} is not supported; "
                                    f"this server speaks {TUS_VERSION}")


def parse_int(header: str | None, name: str) -> int:
    if header is None:
        raise HeaderMissing(name, f"the {name} header is required")
    if not _INT_RE.match(header.strip()):
        raise HeaderMalformed(name, f"{name} must be a non-negative integer")
    return int(header.strip())


def parse_length(header: str | None, max_size: int) -> int:
    length = parse_int(header, "Upload-Length")
    if length > max_size:
        raise UploadTooLarge(f"Upload-Length {length} is beyond this cluster's limit of "
                       f"{max_size} bytes (Tus-Max-Size)")
    return length


def parse_metadata(header: str | None) -> dict[str, str | None]:
    """``key base64,key2 base64`` (values optional); keys unique, values UTF-8."""
    out: dict[str, str | None] = {}
    if not header or not header.strip():
        return out
    if len(header) > MAX_METADATA:
        raise HeaderMalformed("Upload-Metadata", f"Upload-Metadata is longer than {MAX_METADATA} bytes")
    for item in header.split(","):
        bits = item.strip().split(" ")
        if not bits[0] or len(bits) > 2 or bits[0] in out or not bits[0].isascii():
            raise HeaderMalformed("Upload-Metadata", f"Upload-Metadata pair {item.strip()!r} is malformed")
        value: str | None = None
        if len(bits) == 2:
            try:
                value = base64.b64decode(bits[1], validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise HeaderMalformed("Upload-Metadata",
                                      f"Upload-Metadata value of {bits[0]!r} is not base64 of UTF-8") from None
        out[bits[0]] = value
    return out


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: sha1 <base64 digest>``; refused: an unsupported algorithm or a bad digest."""
    if header is None:
        return None
    bits = header.strip().split(" ")
    if len(bits) != 2:
        raise HeaderMalformed("Upload-Checksum", "Upload-Checksum must be '<algorithm> <base64 digest>'")
    algo = bits[0].lower()
    if algo not in CHECKSUM_ALGORITHMS:
        raise ChecksumAlgorithmUnsupported(
            f"checksum algorithm {bits[0]!r} is not supported (use {', '.join(CHECKSUM_ALGORITHMS)})")
    try:
        digest = base64.b64decode(bits[1], validate=True)
    except binascii.Error:
        raise HeaderMalformed("Upload-Checksum", "the Upload-Checksum digest is not base64") from None
    if len(digest) != 20:
        raise HeaderMalformed("Upload-Checksum", "a sha1 digest is 20 bytes")
    return algo, digest


def check_content_type(header: str | None) -> None:
    if (header or "").split(";")[0].strip().lower() != OFFSET_CONTENT_TYPE:
        raise WrongContentType(f"PATCH bodies must be sent as Content-Type: {OFFSET_CONTENT_TYPE}")


# ---- formulas -----------------------------------------------------------------------------------

PLANNED_PARTS = MAX_PARTS // 2  # an upload's parts; the other half is slack for fenced numbers


def choose_part_size(length: int, preferred: int, min_part: int = MIN_PART) -> int:
    """``preferred`` (at least ``min_part``) unless the upload would need more than 5,000 parts:
    half of S3's 10,000 part numbers stay free for PATCHes that fail (see :func:`take_lock`)."""
    size = max(preferred, min_part)
    if length <= size * PLANNED_PARTS:
        return size
    return math.ceil(length / PLANNED_PARTS / min_part) * min_part


def reserved_of(up: dict[str, Any]) -> int:
    """The highest part number any lock of this upload may have written (records from before
    fencing: the recorded parts, numbered 1..k)."""
    return up.get("reserved", max((p["n"] for p in up["parts"]), default=0))


def parts_for(unassigned: int, *, part_size: int, final: bool) -> int:
    """How many parts :func:`planned_part` cuts ``unassigned`` bytes into.  Pure."""
    n = 0
    while size := planned_part(unassigned, part_size=part_size, final=final):
        n += 1
        unassigned -= size
    return n


def parts_needed(up: dict[str, Any], body_length: int | None) -> int:
    """The part numbers a PATCH at the durable offset may use: its planned parts (the old tail and
    ``body_length`` bytes), or, without Content-Length, as many as the rest of the upload could
    need (the body cannot go past Upload-Length)."""
    tail = up["tail"]["size"] if up["tail"] else 0
    rest = up["length"] - up["offset"]
    if body_length is None:
        return parts_for(tail + rest, part_size=up["part_size"], final=True) + 1
    final = up["offset"] + body_length == up["length"]
    return max(1, parts_for(tail + body_length, part_size=up["part_size"], final=final))


def cut_size(buffered: int, remaining: int | None, *, part_size: int, final: bool) -> int:
    """How many of the ``buffered`` bytes of a PATCH to send as the next part now (0: none yet).

    ``remaining`` is what the body still has to bring: a number (from Content-Length), ``None``
    when unknown, ``0`` once the body ended.  ``final`` says the PATCH ends at Upload-Length.
    Whole parts of ``part_size`` go as soon as they are buffered, unless fewer than ``part_size``
    bytes would be left for the PATCH's last part: then they wait and the last part takes them
    (at most ``2 * part_size - 1`` bytes).  At the end, the rest is the last part when it is at
    least ``part_size`` or the upload's final bytes; otherwise 0: it becomes the tail.
    """
    if buffered <= 0:
        return 0
    if remaining == 0:
        return buffered if final or buffered >= part_size else 0
    if buffered < part_size:
        return 0
    if remaining is None or final or buffered + remaining - part_size >= part_size:
        return part_size
    return 0


def planned_part(unassigned: int, *, part_size: int, final: bool) -> int:
    """The size of the next part of a PATCH whose length is known, before its bytes are here.

    ``unassigned``: the bytes of this PATCH (the old tail's and the body's) not in a part yet,
    received or still to come.  The same parts as :func:`cut_size` cuts from the same bytes: whole
    parts while at least two parts' worth is left, then the rest as the last part if it may be one
    (at least ``part_size``, or the upload's final bytes); 0 when the rest becomes the tail.  Knowing
    the size up front lets a part be sent to storage while its bytes arrive (storage.store).
    The upload's final PATCH is whole parts and a short last one, as :func:`cut_size` cuts it.
    """
    if unassigned <= 0:
        return 0
    if final:
        return min(part_size, unassigned)
    if unassigned >= 2 * part_size:
        return part_size
    return unassigned if final or unassigned >= part_size else 0


def tail_key(video_id: str, offset: int, request: str) -> str:
    """A new key for every tail version: a stale writer can never overwrite a durable tail."""
    return f"videos/{video_id}/tus/tail-{offset:015d}-{request}"


def tus_prefix(video_id: str) -> str:
    return f"videos/{video_id}/tus/"


# ---- state ------------------------------------------------------------------------------------------

def new_upload(upload_id: str, length: int, metadata: dict[str, str | None], part_size: int,
               now: float, expiry: float) -> dict[str, Any]:
    return {"upload_id": upload_id, "part_size": part_size, "length": length, "offset": 0,
            "parts": [], "tail": None, "metadata": metadata, "expires_at": now + expiry, "lock": None}


def upload_of(rec: Record | None) -> dict[str, Any]:
    """The upload state of a record that is still ``uploading``; otherwise the protocol's answer."""
    if rec is None:
        raise UploadNotFound("no such upload")
    if rec["state"] == lifecycle.DELETED:
        raise UploadGone("this upload was terminated or has expired")
    if rec["state"] != lifecycle.UPLOADING or not rec.get("upload"):
        raise UploadComplete(f"the upload is complete (video is {rec['state']})")
    return rec["upload"]


def offset_of(rec: Record) -> tuple[int, int]:
    """(Upload-Offset, Upload-Length) as HEAD reports them; a finished upload reports its size."""
    if rec["state"] == lifecycle.DELETED:
        raise UploadGone("this upload was terminated or has expired")
    up = rec.get("upload")
    if rec["state"] == lifecycle.UPLOADING and up:
        return up["offset"], up["length"]
    size = rec.get("size") or 0
    return size, size


def is_full(up: dict[str, Any]) -> bool:
    """Every byte is durable (as parts); what remains is completing the multipart upload."""
    return up["offset"] == up["length"]


def lock_live(up: dict[str, Any], now: float, alive: Callable[[str], bool]) -> bool:
    lock = up.get("lock")
    return lock is not None and lock["expires"] > now and alive(lock["holder"])


def take_lock(rec: Record | None, *, holder: str, request: str, offset: int, now: float, ttl: float,
              alive: Callable[[str], bool] = lambda _: True, body_length: int | None = None) -> Record:
    """Start a PATCH at ``offset``: refused (UploadLocked, OffsetMismatch) when another PATCH holds
    a live lock or the offset differs.

    A lock whose expiry passed, or whose holder our membership view says is dead, is taken over.
    UploadFull: every byte is here, the upload only needs finishing (the caller does
    that).  BeyondUploadLength when ``body_length`` (Content-Length) would go beyond Upload-Length.

    **Fencing.** The lock comes with part numbers no lock had before: ``first..last``, right
    after ``reserved``, which moves on to ``last``.  A PATCH writes only its own numbers, so a
    writer that lost its lock (paused past its expiry, cut off while a part was still on its
    way to S3) can only stage parts nobody records: they are left out of the completion.  A
    commit (:func:`advance`) hands back the numbers its PATCH did not use (every part of it is
    answered by then); a PATCH that failed keeps its numbers forever.  UploadExhausted
    when S3's 10,000 run out (the part size leaves half of them for that).
    """
    up = upload_of(rec)
    assert rec is not None
    if is_full(up):
        raise UploadFull("every byte of this upload is here; it is being finished")
    if body_length is not None and offset == up["offset"] and offset + body_length > up["length"]:
        raise BeyondUploadLength(f"the body goes beyond Upload-Length ({up['length']} "
                                 "bytes); nothing of this PATCH was kept")
    if lock_live(up, now, alive) and up["lock"]["request"] != request:
        raise UploadLocked("another PATCH to this upload is in progress; retry after it")
    if offset != up["offset"]:
        raise OffsetMismatch(
            f"Upload-Offset {offset} does not match the upload's offset {up['offset']}")
    first = reserved_of(up) + 1
    last = first + parts_needed(up, body_length) - 1
    if last > MAX_PARTS:
        raise UploadExhausted(f"this upload has used up S3's {MAX_PARTS} part numbers "
                              "on PATCHes that failed; terminate it and upload the file again")
    new = copy.deepcopy(rec)
    new["upload"]["lock"] = {"holder": holder, "request": request, "expires": now + ttl,
                             "first": first, "last": last}
    new["upload"]["reserved"] = last
    return new


def _check_lock(rec: Record | None, request: str) -> dict[str, Any]:
    up = upload_of(rec)
    lock = up.get("lock")
    if lock is None or lock["request"] != request:
        raise LockLost("this PATCH lost its lock on the upload (it went stale and "
                       "another request took it over); ask HEAD for the offset and resume")
    return up


def renew_lock(rec: Record | None, *, request: str, now: float, ttl: float) -> Record:
    _check_lock(rec, request)
    assert rec is not None
    new = copy.deepcopy(rec)
    new["upload"]["lock"]["expires"] = now + ttl
    return new


def release_lock(rec: Record | None, *, request: str) -> Record | None:
    """The record without our lock, or None when there is nothing to release."""
    if rec is None or rec["state"] != lifecycle.UPLOADING or not rec.get("upload"):
        return None
    lock = rec["upload"].get("lock")
    if lock is None or lock["request"] != request:
        return None
    new = copy.deepcopy(rec)
    new["upload"]["lock"] = None
    return new


def advance(rec: Record | None, *, request: str, start: int, parts: list[dict[str, Any]],
            tail: dict[str, Any] | None, offset: int, now: float, expiry: float,
            release: bool = True) -> Record:
    """Make ``offset`` durable: ``parts`` (new whole parts, or every remaining part when the upload is
    full) and ``tail`` are in storage.  Only the lock holder that started at ``start`` may."""
    up = _check_lock(rec, request)
    assert rec is not None
    if up["offset"] != start:
        raise OffsetMismatch(f"the upload moved on to {up['offset']} (this PATCH started "
                             f"at {start})")
    if not start <= offset <= up["length"]:
        raise ValueError(f"offset {offset} outside {start}..{up['length']}")
    new = copy.deepcopy(rec)
    nu = new["upload"]
    have = {p["n"] for p in nu["parts"]}
    lock = up["lock"]
    for p in parts:
        if p["n"] in have:
            raise ValueError(f"part {p['n']} is already durable")
        if "first" in lock and not lock["first"] <= p["n"] <= lock["last"]:
            raise ValueError(f"part {p['n']} is outside this lock's numbers {lock['first']}..{lock['last']}")
        nu["parts"].append(dict(p))
    nu["parts"].sort(key=lambda p: p["n"])
    nu["offset"] = offset
    nu["tail"] = dict(tail) if tail else None
    nu["expires_at"] = now + expiry
    if release:
        nu["lock"] = None
        if "first" in lock:  # numbers this lock did not use go back: none of its parts is on its way
            nu["reserved"] = max([lock["first"] - 1] + [p["n"] for p in nu["parts"]])
    check_invariants(nu)
    return new


def check_invariants(up: dict[str, Any]) -> None:
    """Raise ValueError when the upload state breaks a documented invariant."""
    size, offset, length = up["part_size"], up["offset"], up["length"]
    nums = [p["n"] for p in up["parts"]]
    if nums != sorted(set(nums)) or (nums and not 1 <= nums[0] <= nums[-1] <= reserved_of(up)):
        raise ValueError(f"parts are not ascending within 1..{reserved_of(up)}: {nums}")
    if not 0 <= offset <= length:
        raise ValueError(f"offset {offset} outside 0..{length}")
    sizes = [p["size"] for p in up["parts"]]
    tail_size = up["tail"]["size"] if up["tail"] else 0
    if sum(sizes) + tail_size != offset:
        raise ValueError(f"parts ({sum(sizes)} bytes) and tail ({tail_size}) do not add up to offset {offset}")
    full = offset == length and offset > 0
    if full and tail_size:
        raise ValueError("a full upload keeps every byte in parts, not in a tail")
    whole = sizes[:-1] if full else sizes
    if any(s < size for s in whole):
        raise ValueError(f"a part is shorter than part_size {size}: {sizes}")
    if tail_size >= size:
        raise ValueError(f"a tail of {tail_size} bytes should have been a part (part_size {size})")


def stale_parts(recorded: list[dict[str, Any]], staged: list[tuple[int, str]]) -> list[int]:
    """The recorded part numbers whose staged part (number, ETag from ListParts) is missing or
    another one.  ETags compare without quotes and case."""
    have = {n: etag.strip('"').lower() for n, etag in staged}
    return [p["n"] for p in recorded if have.get(p["n"]) != p["etag"].strip('"').lower()]


def complete(rec: Record | None, node: str, now: float) -> Record:
    """``uploading`` (full) -> ``uploaded`` once the source object is assembled."""
    up = upload_of(rec)
    assert rec is not None
    if not is_full(up):
        raise UploadIncomplete(f"only {up['offset']} of {up['length']} bytes are here")
    new = lifecycle.mark_uploaded(rec, node, now, size=up["length"])
    new["upload"] = None
    return new


def expired(rec: Record, now: float, alive: Callable[[str], bool] = lambda _: True) -> bool:
    """An upload nobody touched for the expiry time (and no live PATCH) may be reclaimed."""
    up = rec.get("upload")
    if rec["state"] != lifecycle.UPLOADING or not up or is_full(up):
        return False
    return up["expires_at"] <= now and not lock_live(up, now, alive)


def expire(rec: Record | None, node: str, now: float,
           alive: Callable[[str], bool] = lambda _: True) -> Record:
    """``uploading`` -> ``deleted`` with reason ``expired``."""
    if rec is None or not expired(rec, now, alive):
        raise lifecycle.Refused("not_expired", "the upload is not expired")
    new = lifecycle.delete(rec, node, now)
    new["history"][-1]["reason"] = "expired"
    new["error"] = {"code": "upload_expired", "message": "the resumable upload was abandoned and expired"}
    return new


def terminate(rec: Record | None, node: str, now: float) -> Record:
    """tus termination: any state but deleted -> ``deleted``."""
    if rec is None:
        raise UploadNotFound("no such upload")
    if rec["state"] == lifecycle.DELETED:
        raise UploadGone("this upload was already terminated")
    new = lifecycle.delete(rec, node, now)
    new["history"][-1]["reason"] = "terminated"
    return new
