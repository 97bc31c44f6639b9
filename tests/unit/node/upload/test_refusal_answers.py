"""Every upload refusal (node/upload/errors.py) has its answer in the HTTP table
(node.http.errors.ANSWERS), and the answers are the ones docs/api.md and docs/uploads.md list."""

import inspect

import pytest

from node.http.errors import upload_answer, upload_error
from node.upload import errors as up

GROUPS = {up.UploadRefused, up.UploadConflict, up.HeaderRefused}  # never raised as such


@pytest.mark.parametrize("refusal, answer", [
    (up.TusVersionMissing("m"), (412, "tus_version_required")),
    (up.TusVersionUnsupported("m"), (412, "tus_version_unsupported")),
    (up.HeaderMissing("Upload-Offset", "m"), (400, "upload_offset_required")),
    (up.HeaderMissing("Upload-Length", "m"), (400, "upload_length_required")),
    (up.HeaderMalformed("Upload-Offset", "m"), (400, "bad_upload_offset")),
    (up.HeaderMalformed("Upload-Metadata", "m"), (400, "bad_upload_metadata")),
    (up.HeaderMalformed("Upload-Checksum", "m"), (400, "bad_upload_checksum")),
    (up.ChecksumAlgorithmUnsupported("m"), (400, "unsupported_checksum_algorithm")),
    (up.DeferredLengthUnsupported("m"), (400, "defer_length_unsupported")),
    (up.WrongContentType("m"), (415, "bad_content_type")),
    (up.UploadTooLarge("m"), (413, "too_large")),
    (up.BeyondUploadLength("m"), (413, "beyond_upload_length")),
    (up.UploadNotFound("m"), (404, "not_found")),
    (up.UploadGone("m"), (410, "gone")),
    (up.OffsetMismatch("m"), (409, "offset_mismatch")),
    (up.UploadLocked("m"), (409, "upload_locked")),
    (up.LockLost("m"), (409, "lock_lost")),
    (up.UploadComplete("m"), (409, "upload_complete")),
    (up.UploadFull("m"), (409, "upload_full")),
    (up.UploadIncomplete("m"), (409, "upload_incomplete")),
    (up.UploadExhausted("m"), (409, "upload_exhausted")),
    (up.ChecksumMismatch("m"), (460, "checksum_mismatch")),
    (up.BodyTooShort("m"), (400, "body_too_short")),
    (up.BodyTooLong("m"), (400, "body_too_long")),
    (up.UploadInProgress("m"), (409, "upload_in_progress")),
])
def test_each_refusal_answers_as_the_contract_says(refusal, answer):
    assert upload_answer(refusal) == answer
    e = upload_error(refusal)
    assert (e.status, e.code, e.message) == (*answer, "m")


def test_every_refusal_class_has_a_row():
    refusals = [c for _, c in inspect.getmembers(up, inspect.isclass)
                if issubclass(c, up.UploadRefused) and c not in GROUPS]
    assert len(refusals) == 22  # the rows above, by class
    for cls in refusals:
        args = ("Upload-Offset", "m") if cls in (up.HeaderMissing, up.HeaderMalformed) else ("m",)
        status, code = upload_answer(cls(*args))
        assert 400 <= status < 500 and code
