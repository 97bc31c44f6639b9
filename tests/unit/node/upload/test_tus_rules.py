"""The pure tus upload state machine (node/upload/tus.py): headers, formulas, locks, offsets, expiry."""

from __future__ import annotations

import base64
import copy

import pytest

import storage
from node.http.errors import upload_answer
from node.records import lifecycle

from node.upload import tus
from node.upload.errors import UploadRefused

MiB = 1024 * 1024


def rec_with(length=100, part_size=10, offset=0, lock=None, expires_at=1000.0, state="uploading"):
    up = tus.new_upload("mp1", length, {"filename": "a.mp4"}, part_size, now=0.0, expiry=expires_at)
    whole, rest = divmod(offset, part_size)
    up["parts"] = [{"n": i + 1, "etag": f'"e{i + 1}"', "size": part_size} for i in range(whole)]
    up["tail"] = {"key": "t", "size": rest} if rest else None
    up["offset"] = offset
    up["lock"] = lock
    rec = lifecycle.new_record("v" * 26, "n1", 0.0, state=lifecycle.UPLOADING, filename="a.mp4",
                               size=length, upload=up)
    rec["state"] = state
    return rec


def status_of(fn, *a, **kw):
    """The refusal's answer as the HTTP edge gives it: (status, code)."""
    with pytest.raises(UploadRefused) as ei:
        fn(*a, **kw)
    return upload_answer(ei.value)


# ---- headers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, status", [(None, 412), ("0.2.2", 412), ("1.0.1", 412), ("", 412)])
def test_version_other_than_1_0_0_is_412(header, status):
    assert status_of(tus.check_version, header)[0] == status


def test_version_1_0_0_passes():
    tus.check_version("1.0.0")
    tus.check_version(" 1.0.0 ")


@pytest.mark.parametrize("header, expect", [
    ("0", 0), ("123", 123), (None, 400), ("-1", 400), ("1.5", 400), ("abc", 400), ("", 400),
    ("99999999999999999999", 400)])
def test_parse_int(header, expect):
    if expect == 400:
        assert status_of(tus.parse_int, header, "Upload-Offset")[0] == 400
    else:
        assert tus.parse_int(header, "Upload-Offset") == expect


def test_length_beyond_max_is_413():
    assert tus.parse_length("10", 10) == 10
    assert status_of(tus.parse_length, "11", 10) == (413, "too_large")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.mark.parametrize("header, expect", [
    (None, {}), ("", {}),
    (f"filename {b64('clip.mp4')}", {"filename": "clip.mp4"}),
    (f"filename {b64('vidéo.mp4')},is_confidential", {"filename": "vidéo.mp4", "is_confidential": None}),
    (f"filename {b64('a')}, filetype {b64('video/mp4')}", {"filename": "a", "filetype": "video/mp4"}),
])
def test_parse_metadata(header, expect):
    assert tus.parse_metadata(header) == expect


@pytest.mark.parametrize("header", ["filename not*base64", f"a {b64('x')},a {b64('y')}", "a b c", ",",
                                    "k " + base64.b64encode(b"\xff\xfe").decode()])
def test_bad_metadata_is_400(header):
    assert status_of(tus.parse_metadata, header)[0] == 400


def test_parse_checksum():
    digest = bytes(range(20))
    assert tus.parse_checksum(None) is None
    assert tus.parse_checksum("sha1 " + base64.b64encode(digest).decode()) == ("sha1", digest)
    assert status_of(tus.parse_checksum, "md5 " + base64.b64encode(bytes(16)).decode()) == \
        (400, "unsupported_checksum_algorithm")
    assert status_of(tus.parse_checksum, "sha1 !!!")[0] == 400
    assert status_of(tus.parse_checksum, "sha1 " + base64.b64encode(bytes(5)).decode())[0] == 400
    assert status_of(tus.parse_checksum, "sha1")[0] == 400


@pytest.mark.parametrize("ctype, ok", [
    ("application/offset+octet-stream", True), ("Application/Offset+Octet-Stream; x=y", True),
    ("application/octet-stream", False), (None, False), ("", False)])
def test_content_type(ctype, ok):
    if ok:
        tus.check_content_type(ctype)
    else:
        assert status_of(tus.check_content_type, ctype) == (415, "bad_content_type")


# ---- formulas -------------------------------------------------------------------------------------

@pytest.mark.parametrize("length, preferred, expect", [
    (0, 8 * MiB, 8 * MiB),
    (1, 8 * MiB, 8 * MiB),
    (8 * MiB * 5_000, 8 * MiB, 8 * MiB),           # exactly 5,000 parts (half of S3's numbers)
    (8 * MiB * 5_000 + 1, 8 * MiB, 10 * MiB),      # one byte more: next multiple of 5 MiB
    (1 * MiB, 1 * MiB, 5 * MiB),                   # never below S3's minimum
    (200 * 1024 * MiB, 8 * MiB, 45 * MiB),         # 200 GiB
])
def test_choose_part_size(length, preferred, expect):
    size = tus.choose_part_size(length, preferred)
    assert size == expect
    assert length <= size * tus.PLANNED_PARTS


@pytest.mark.parametrize("given, buffered, remaining, final, cut", [
    # Content-Length known: whole parts while at least a part is still to come after them
    ("part buffered, plenty to come", 10, 20, False, 10),
    ("part buffered, a part still to come", 10, 10, False, 10),
    ("part buffered, less than a part to come", 10, 6, False, 0),
    ("part and a bit buffered, a part to come", 13, 10, False, 10),
    ("less than a part", 9, 20, False, 0),
    ("nothing", 0, 20, False, 0),
    ("all here, short of a part", 9, 0, False, 0),
    ("all here, a part", 10, 0, False, 10),
    ("all here, up to two parts less a byte", 19, 0, False, 19),
    # the upload's final bytes: the last part may be short, whole parts go at once
    ("final: part buffered, a byte to come", 10, 1, True, 10),
    ("final: all here, short", 3, 0, True, 3),
    ("final: all here, part and a bit", 13, 0, True, 13),
    # Content-Length unknown: whole parts as they fill; the end as when known
    ("unknown: part buffered", 12, None, False, 10),
    ("unknown: short of a part", 9, None, False, 0),
    ("unknown: ended short of a part", 9, 0, False, 0),
])
def test_cut_size(given, buffered, remaining, final, cut):
    assert tus.cut_size(buffered, remaining, part_size=10, final=final) == cut, given


@pytest.mark.parametrize("body, pieces", [
    (16, [5, 5, 6]), (15, [5, 5, 5]), (9, [9]), (5, [5]), (4, []), (10, [5, 5]), (14, [5, 9]),
])
def test_a_body_of_known_length_is_whole_parts_and_no_tail(body, pieces):
    """What a PATCH of ``body`` bytes (arriving a byte at a time, length known) is cut into, with
    part_size 5 and the upload not ending there: parts of 5..9 bytes; under 5 only a tail."""
    cuts, buffered = [], 0
    for received in range(1, body + 1):
        buffered += 1
        while n := tus.cut_size(buffered, body - received, part_size=5, final=False):
            cuts.append(n)
            buffered -= n
    assert cuts == pieces and buffered == body - sum(pieces)


def test_records_from_before_fencing_reserved_their_recorded_parts():
    assert tus.reserved_of(rec_with(offset=0)["upload"]) == 0
    assert tus.reserved_of(rec_with(offset=25)["upload"]) == 2


@pytest.mark.parametrize("offset, body_length, expect", [
    (0, 30, 3),      # 10 + 10 + 10, no tail
    (0, 35, 3),      # 10 + 10 + 15: the last part takes the rest
    (0, 9, 1),       # shorter than a part: only a tail, but a number is reserved all the same
    (25, 20, 2),     # the old tail (5) + 20 = 25: 10 + 15
    (95, 5, 1),      # the final 5 bytes after a tail of 5: one part of 10
    (25, None, 8),   # unknown length: as many as the rest could need (75 + tail 5: 8 parts) + 1
])
def test_parts_needed(offset, body_length, expect):
    up = rec_with(offset=offset)["upload"]
    want = expect + (1 if body_length is None else 0)
    assert tus.parts_needed(up, body_length) == want


def test_tail_keys_differ_per_offset_and_request():
    keys = {tus.tail_key("v", o, r) for o in (1, 2) for r in ("a", "b")}
    assert len(keys) == 4 and all(k.startswith(tus.tus_prefix("v")) for k in keys)


# ---- lock -------------------------------------------------------------------------------------------

def test_take_lock_on_free_upload():
    new = tus.take_lock(rec_with(offset=15), holder="n1", request="r1", offset=15, now=5.0, ttl=6.0,
                        body_length=20)
    assert new["upload"]["lock"] == {"holder": "n1", "request": "r1", "expires": 11.0, "first": 2, "last": 3}
    assert new["upload"]["reserved"] == 3


def test_every_lock_gets_part_numbers_no_lock_had_before():
    """A PATCH that failed, or lost its lock, keeps its numbers: the next one never reuses them,
    so a late upload by the loser cannot replace a part someone else recorded."""
    rec = rec_with(offset=10)  # part 1 recorded
    a = tus.take_lock(rec, holder="n1", request="a", offset=10, now=0.0, ttl=6.0, body_length=30)
    assert (a["upload"]["lock"]["first"], a["upload"]["lock"]["last"]) == (2, 4)
    # a stalls past its expiry; b takes over at the same offset
    b = tus.take_lock(a, holder="n2", request="b", offset=10, now=7.0, ttl=6.0, body_length=30)
    assert (b["upload"]["lock"]["first"], b["upload"]["lock"]["last"]) == (5, 7)
    done = tus.advance(b, request="b", start=10, parts=[{"n": n, "etag": f"b{n}", "size": 10} for n in (5, 6, 7)],
                       tail=None, offset=40, now=8.0, expiry=10.0)
    assert [p["n"] for p in done["upload"]["parts"]] == [1, 5, 6, 7]
    c = tus.take_lock(done, holder="n1", request="c", offset=40, now=9.0, ttl=6.0, body_length=10)
    assert c["upload"]["lock"]["first"] == 8
    with pytest.raises(ValueError, match="outside this lock"):  # a's numbers are not c's
        tus.advance(c, request="c", start=40, parts=[{"n": 3, "etag": "x", "size": 10}], tail=None,
                    offset=50, now=9.0, expiry=10.0)


def test_a_commit_hands_back_the_numbers_it_did_not_use():
    """A PATCH without Content-Length reserves what the rest of the upload could need; its commit
    keeps only what it used, so the next lock starts right after."""
    rec = tus.take_lock(rec_with(offset=10), holder="n1", request="a", offset=10, now=0.0, ttl=6.0)
    assert (rec["upload"]["lock"]["first"], rec["upload"]["reserved"]) == (2, 11)
    done = tus.advance(rec, request="a", start=10, parts=[{"n": 2, "etag": "x", "size": 10}],
                       tail={"key": "t", "size": 3}, offset=23, now=1.0, expiry=10.0)
    assert done["upload"]["reserved"] == 2
    only_tail = tus.take_lock(done, holder="n1", request="b", offset=23, now=2.0, ttl=6.0, body_length=2)
    assert only_tail["upload"]["lock"]["first"] == 3
    kept = tus.advance(only_tail, request="b", start=23, parts=[], tail={"key": "t2", "size": 5},
                       offset=25, now=3.0, expiry=10.0)
    assert kept["upload"]["reserved"] == 2  # a tail only: its number goes back too


def test_part_numbers_run_out_only_after_thousands_of_failed_patches():
    rec = rec_with(offset=10)
    rec["upload"]["reserved"] = storage.MAX_PARTS - 1
    ok = tus.take_lock(rec, holder="n1", request="a", offset=10, now=0.0, ttl=6.0, body_length=10)
    assert ok["upload"]["lock"]["first"] == ok["upload"]["lock"]["last"] == storage.MAX_PARTS
    assert status_of(tus.take_lock, rec, holder="n1", request="a", offset=10, now=0.0, ttl=6.0,
                     body_length=20) == (409, "upload_exhausted")


@pytest.mark.parametrize("given, when, then", [
    ("live lock of another request", dict(lock={"holder": "n2", "request": "r9", "expires": 10.0}, now=5.0),
     (409, "upload_locked")),
    ("live lock on the same node", dict(lock={"holder": "n1", "request": "r9", "expires": 10.0}, now=5.0),
     (409, "upload_locked")),
    ("offset differs", dict(lock=None, now=5.0, offset=14), (409, "offset_mismatch")),
    ("deleted upload", dict(lock=None, now=5.0, state="deleted"), (410, "gone")),
    ("completed upload", dict(lock=None, now=5.0, state="uploaded"), (409, "upload_complete")),
    ("body beyond Upload-Length", dict(lock=None, now=5.0, body_length=86), (413, "beyond_upload_length")),
    ("body beyond, though locked", dict(lock={"holder": "n2", "request": "r9", "expires": 10.0}, now=5.0,
                                        body_length=86), (413, "beyond_upload_length")),
])
def test_take_lock_refusals(given, when, then):
    rec = rec_with(offset=15, lock=when.get("lock"), state=when.get("state", "uploading"))
    assert status_of(tus.take_lock, rec, holder="n1", request="r1", offset=when.get("offset", 15),
                     now=when["now"], ttl=6.0, body_length=when.get("body_length")) == then, given


def test_take_lock_with_body_up_to_the_length():
    new = tus.take_lock(rec_with(offset=15), holder="n1", request="r1", offset=15, now=5.0, ttl=6.0,
                        body_length=85)
    assert new["upload"]["lock"]["request"] == "r1"


def test_take_lock_on_a_full_upload_asks_to_finish_it():
    full = rec_with(length=20, offset=20)
    full["upload"]["tail"] = None
    assert status_of(tus.take_lock, full, holder="n1", request="r1", offset=20, now=0.0,
                     ttl=6.0) == (409, "upload_full")


def test_take_lock_missing_record_is_404():
    assert status_of(tus.take_lock, None, holder="n1", request="r", offset=0, now=0, ttl=1)[0] == 404


def test_stale_lock_is_taken_over():
    lock = {"holder": "n2", "request": "r9", "expires": 10.0}
    # expired
    new = tus.take_lock(rec_with(lock=lock), holder="n1", request="r1", offset=0, now=10.0, ttl=6.0)
    assert new["upload"]["lock"]["request"] == "r1"
    # holder dead in our view, though not expired
    new = tus.take_lock(rec_with(lock=lock), holder="n1", request="r1", offset=0, now=5.0, ttl=6.0,
                        alive=lambda n: n != "n2")
    assert new["upload"]["lock"]["holder"] == "n1"


def test_renew_and_release_need_our_lock():
    rec = tus.take_lock(rec_with(), holder="n1", request="r1", offset=0, now=0.0, ttl=6.0)
    assert tus.renew_lock(rec, request="r1", now=4.0, ttl=6.0)["upload"]["lock"]["expires"] == 10.0
    assert status_of(tus.renew_lock, rec, request="r2", now=4.0, ttl=6.0) == (409, "lock_lost")
    assert tus.release_lock(rec, request="r2") is None
    assert tus.release_lock(rec, request="r1")["upload"]["lock"] is None
    assert tus.release_lock(rec_with(state="deleted"), request="r1") is None


# ---- offsets -------------------------------------------------------------------------------------------

def locked(rec, request="r1"):
    return tus.take_lock(rec, holder="n1", request=request, offset=rec["upload"]["offset"], now=0.0, ttl=6.0)


def test_advance_adds_parts_and_tail_and_releases():
    rec = locked(rec_with(offset=5))  # tail of 5
    new = tus.advance(rec, request="r1", start=5, parts=[{"n": 1, "etag": "a", "size": 10},
                                                        {"n": 2, "etag": "b", "size": 10}],
                      tail={"key": "t2", "size": 3}, offset=23, now=50.0, expiry=100.0)
    up = new["upload"]
    assert up["offset"] == 23 and [p["n"] for p in up["parts"]] == [1, 2] and up["tail"]["size"] == 3
    assert up["lock"] is None and up["expires_at"] == 150.0
    assert rec["upload"]["offset"] == 5  # pure: the input is untouched


def test_advance_to_full_with_short_last_part():
    rec = locked(rec_with(length=25, offset=20))
    new = tus.advance(rec, request="r1", start=20, parts=[{"n": 3, "etag": "c", "size": 5}], tail=None,
                      offset=25, now=1.0, expiry=10.0)
    assert tus.is_full(new["upload"])
    done = tus.complete(new, "n2", 2.0)
    assert done["state"] == "uploaded" and done["size"] == 25 and done["upload"] is None
    assert done["history"][-1]["node"] == "n2"


def test_advance_refusals():
    rec = locked(rec_with(offset=10))
    kw = dict(parts=[], tail={"key": "t", "size": 2}, offset=12, now=1.0, expiry=10.0)
    assert status_of(tus.advance, rec, request="r2", start=10, **kw) == (409, "lock_lost")
    assert status_of(tus.advance, rec, request="r1", start=9, **kw) == (409, "offset_mismatch")
    moved = copy.deepcopy(rec)
    moved["upload"]["offset"] = 11
    assert status_of(tus.advance, moved, request="r1", start=10, **kw)[0] == 409
    with pytest.raises(ValueError):  # a tail that does not match the offset breaks the invariant
        tus.advance(rec, request="r1", start=10, parts=[], tail={"key": "t", "size": 3}, offset=12,
                    now=1.0, expiry=10.0)
    with pytest.raises(ValueError):  # beyond the length
        tus.advance(rec, request="r1", start=10, parts=[], tail=None, offset=101, now=1.0, expiry=10.0)


@pytest.mark.parametrize("given, staged, stale", [
    ("all as recorded", [(1, '"a"'), (2, '"b"')], []),
    ("quotes and case differ", [(1, "A"), (2, '"B"')], []),
    ("more staged than recorded (dropped at completion)", [(1, '"a"'), (2, '"b"'), (3, '"c"')], []),
    ("part 2 replaced by a late writer", [(1, '"a"'), (2, '"x"')], [2]),
    ("part 1 missing", [(2, '"b"')], [1]),
])
def test_stale_parts(given, staged, stale):
    recorded = [{"n": 1, "etag": '"a"', "size": 10}, {"n": 2, "etag": '"b"', "size": 10}]
    assert tus.stale_parts(recorded, staged) == stale, given


def test_complete_refuses_incomplete():
    assert status_of(tus.complete, rec_with(offset=50), "n1", 1.0) == (409, "upload_incomplete")


@pytest.mark.parametrize("offset, parts, tail, ok", [
    (0, [], 0, True), (9, [], 9, True), (10, [10], 0, True), (25, [10, 10], 5, True),
    (25, [10, 10], 4, False), (25, [10], 15, False), (20, [10], 10, False),
    # parts of any size from part_size on (a PATCH's last part takes what would have been a tail)
    (31, [10, 16], 5, True), (35, [19, 16], 0, True),
    (25, [10, 9], 6, False),       # a part below part_size (S3 would refuse it but as the last)
    (100, [50, 45, 5], 0, True),   # full: only the last part is short
    (100, [50, 5, 45], 0, False),
    (100, [50, 45], 5, False),     # full: no tail
    (20, [20], 0, True),
])
def test_invariants(offset, parts, tail, ok):
    up = tus.new_upload("mp", 100, {}, 10, 0.0, 1.0)
    up.update(offset=offset, parts=[{"n": i + 1, "etag": "e", "size": n} for i, n in enumerate(parts)],
              tail={"key": "t", "size": tail} if tail else None)
    if ok:
        tus.check_invariants(up)
    else:
        with pytest.raises(ValueError):
            tus.check_invariants(up)


@pytest.mark.parametrize("numbers, reserved, ok", [
    ([1, 3], 3, True),     # a gap: part 2's PATCH failed
    ([3, 1], 3, False),    # not in byte order
    ([1, 1], 3, False),
    ([1, 4], 3, False),    # beyond what any lock was given
    ([0, 1], 3, False),
    ([1, 2], None, True),  # a record from before fencing
])
def test_part_numbers_ascend_within_the_reserved(numbers, reserved, ok):
    up = tus.new_upload("mp", 100, {}, 10, 0.0, 1.0)
    up.update(offset=20, parts=[{"n": n, "etag": "e", "size": 10} for n in numbers])
    if reserved is not None:
        up["reserved"] = reserved
    if ok:
        tus.check_invariants(up)
    else:
        with pytest.raises(ValueError):
            tus.check_invariants(up)


def test_advance_with_a_long_last_part_needs_no_tail():
    rec = locked(rec_with(offset=25))  # two parts and a tail of 5
    new = tus.advance(rec, request="r1", start=25, parts=[{"n": 3, "etag": "c", "size": 16}], tail=None,
                      offset=36, now=1.0, expiry=10.0)
    assert [p["size"] for p in new["upload"]["parts"]] == [10, 10, 16] and new["upload"]["tail"] is None


def test_offset_of_for_head():
    assert tus.offset_of(rec_with(offset=30)) == (30, 100)
    done = rec_with(state="ready")
    done["upload"] = None
    assert tus.offset_of(done) == (100, 100)
    assert status_of(tus.offset_of, rec_with(state="deleted")) == (410, "gone")


# ---- expiry ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, now, lock, state, offset, expect", [
    ("idle past expiry", 1000.0, None, "uploading", 10, True),
    ("not yet", 999.9, None, "uploading", 10, False),
    ("a live PATCH", 1000.0, {"holder": "n1", "request": "r", "expires": 1001.0}, "uploading", 10, False),
    ("a stale PATCH", 1000.0, {"holder": "n1", "request": "r", "expires": 999.0}, "uploading", 10, True),
    ("already uploaded", 2000.0, None, "uploaded", 10, False),
    ("full, only completion missing", 2000.0, None, "uploading", 100, False),
])
def test_expired(given, now, lock, state, offset, expect):
    assert tus.expired(rec_with(offset=offset, lock=lock, state=state, expires_at=1000.0), now) is expect, given


def test_expire_marks_deleted_with_reason():
    new = tus.expire(rec_with(expires_at=10.0), "n3", 11.0)
    assert new["state"] == "deleted" and new["history"][-1]["reason"] == "expired"
    assert new["error"]["code"] == "upload_expired"
    with pytest.raises(lifecycle.Refused):
        tus.expire(rec_with(expires_at=10.0), "n3", 9.0)


def test_terminate():
    assert tus.terminate(rec_with(), "n1", 1.0)["state"] == "deleted"
    assert status_of(tus.terminate, rec_with(state="deleted"), "n1", 1.0) == (410, "gone")
    assert status_of(tus.terminate, None, "n1", 1.0)[0] == 404


@pytest.mark.parametrize("body, tail, final, length", [
    (16, 0, False, None), (15, 0, False, None), (9, 0, False, None), (4, 0, False, None),
    (16, 3, False, None), (2, 3, False, None), (14, 0, True, None), (3, 0, True, None), (0, 4, True, None),
    (23, 4, False, None), (1, 0, False, None),
])
def test_planned_parts_are_the_parts_cut_size_cuts(body, tail, final, length):
    """Planning a PATCH's parts before its bytes arrive gives what cutting them on arrival gives."""
    cuts, buffered = [], tail
    for received in range(1, body + 1):
        buffered += 1
        while n := tus.cut_size(buffered, body - received, part_size=5, final=final):
            cuts.append(n)
            buffered -= n
    if n := tus.cut_size(buffered, 0, part_size=5, final=final):
        cuts.append(n)
    planned, left = [], tail + body
    while n := tus.planned_part(left, part_size=5, final=final):
        planned.append(n)
        left -= n
    assert planned == cuts
