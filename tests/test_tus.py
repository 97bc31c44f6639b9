"""The pure tus upload state machine (node/tus.py): headers, formulas, locks, offsets, expiry."""

from __future__ import annotations

import base64
import copy

import pytest

from node import lifecycle, tus
from node.tus import TusError

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
    with pytest.raises(TusError) as ei:
        fn(*a, **kw)
    return ei.value.status, ei.value.code


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
    (8 * MiB * 10_000, 8 * MiB, 8 * MiB),          # exactly 10,000 parts
    (8 * MiB * 10_000 + 1, 8 * MiB, 10 * MiB),     # one byte more: next multiple of 5 MiB
    (1 * MiB, 1 * MiB, 5 * MiB),                   # never below S3's minimum
    (200 * 1024 * MiB, 8 * MiB, 25 * MiB),         # 200 GiB
])
def test_choose_part_size(length, preferred, expect):
    size = tus.choose_part_size(length, preferred)
    assert size == expect
    assert length <= size * tus.MAX_PARTS


@pytest.mark.parametrize("offset, size, expect", [(0, 10, (0, 0)), (9, 10, (0, 9)), (10, 10, (1, 0)),
                                                  (25, 10, (2, 5))])
def test_split(offset, size, expect):
    assert tus.split(offset, size) == expect
    assert tus.part_number_at(offset, size) == expect[0] + 1


def test_tail_keys_differ_per_offset_and_request():
    keys = {tus.tail_key("v", o, r) for o in (1, 2) for r in ("a", "b")}
    assert len(keys) == 4 and all(k.startswith(tus.tus_prefix("v")) for k in keys)


# ---- lock -------------------------------------------------------------------------------------------

def test_take_lock_on_free_upload():
    new = tus.take_lock(rec_with(offset=15), holder="n1", request="r1", offset=15, now=5.0, ttl=6.0)
    assert new["upload"]["lock"] == {"holder": "n1", "request": "r1", "expires": 11.0}


@pytest.mark.parametrize("given, when, then", [
    ("live lock of another request", dict(lock={"holder": "n2", "request": "r9", "expires": 10.0}, now=5.0),
     (409, "upload_locked")),
    ("live lock on the same node", dict(lock={"holder": "n1", "request": "r9", "expires": 10.0}, now=5.0),
     (409, "upload_locked")),
    ("offset differs", dict(lock=None, now=5.0, offset=14), (409, "offset_mismatch")),
    ("deleted upload", dict(lock=None, now=5.0, state="deleted"), (410, "gone")),
    ("completed upload", dict(lock=None, now=5.0, state="uploaded"), (409, "upload_complete")),
])
def test_take_lock_refusals(given, when, then):
    rec = rec_with(offset=15, lock=when.get("lock"), state=when.get("state", "uploading"))
    assert status_of(tus.take_lock, rec, holder="n1", request="r1", offset=when.get("offset", 15),
                     now=when["now"], ttl=6.0) == then, given


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


def test_complete_refuses_incomplete():
    assert status_of(tus.complete, rec_with(offset=50), "n1", 1.0) == (409, "upload_incomplete")


@pytest.mark.parametrize("offset, parts, tail, ok", [
    (0, 0, 0, True), (9, 0, 9, True), (10, 1, 0, True), (25, 2, 5, True),
    (25, 2, 4, False), (25, 1, 15, False), (20, 1, 10, False)])
def test_invariants(offset, parts, tail, ok):
    up = tus.new_upload("mp", 100, {}, 10, 0.0, 1.0)
    up.update(offset=offset, parts=[{"n": i + 1, "etag": "e", "size": 10} for i in range(parts)],
              tail={"key": "t", "size": tail} if tail else None)
    if ok:
        tus.check_invariants(up)
    else:
        with pytest.raises(ValueError):
            tus.check_invariants(up)


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
