"""API errors: ``{"error": {"code", "message"}}`` with a fitting status, never a traceback."""

from __future__ import annotations

from typing import Any, Callable

from quart import Response, jsonify

import storage

from node import log
from node.upload import errors as up


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after
        self.extra = extra


def error_doc(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The contract's error shape."""
    return {"error": {"code": code, "message": message, **extra}}


def error_response(status: int, code: str, message: str, *, retry_after: int | None = None,
                   **extra: Any) -> Response:
    resp = jsonify(error_doc(code, message, **extra))
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def from_api_error(e: ApiError) -> Response:
    return error_response(e.status, e.code, e.message, retry_after=e.retry_after, **e.extra)


def storage_failure(ctx: Any, e: storage.StorageError, path: str) -> ApiError:
    """The answer to a storage failure outside a route's own handling (counted and logged once):
    503 ``storage_unavailable`` when storage cannot be reached, 503 ``storage_error`` when it
    refused (e.g. SeaweedFS answers ``InvalidAccessKeyId`` for a moment after it restarts); the
    client may retry either."""
    if isinstance(e, storage.StorageUnavailable):
        ctx.count("storage_unavailable_responses")
        log.warning("storage_unavailable", path=path, error=str(e))
        return ApiError(503, "storage_unavailable", "object storage is unreachable; retry shortly",
                        retry_after=2)
    ctx.count("storage_error_responses")
    log.warning("storage_error", path=path, error=str(e))
    return ApiError(503, "storage_error", f"object storage refused the request: {e}", retry_after=2)


# ---- uploads: node.upload's refusals -> (status, code) ------------------------------------------
# (node.upload.errors draws the tree; docs/api.md and docs/uploads.md list these answers.)
# A code is a string, or made from the refused header's name: "Upload-Offset" -> upload_offset.

def _header(fmt: str) -> Callable[[Any], str]:
    return lambda e: fmt.format(e.header.lower().replace("-", "_"))


UPLOAD_ERRORS: dict[type, tuple[int, str | Callable[[Any], str]]] = {
    up.TusVersionMissing: (412, "tus_version_required"),
    up.TusVersionUnsupported: (412, "tus_version_unsupported"),
    up.HeaderMissing: (400, _header("{}_required")),
    up.HeaderMalformed: (400, _header("bad_{}")),
    up.ChecksumAlgorithmUnsupported: (400, "unsupported_checksum_algorithm"),
    up.DeferredLengthUnsupported: (400, "defer_length_unsupported"),
    up.WrongContentType: (415, "bad_content_type"),
    up.UploadTooLarge: (413, "too_large"),
    up.BeyondUploadLength: (413, "beyond_upload_length"),
    up.UploadNotFound: (404, "not_found"),
    up.UploadGone: (410, "gone"),
    up.OffsetMismatch: (409, "offset_mismatch"),
    up.UploadLocked: (409, "upload_locked"),
    up.LockLost: (409, "lock_lost"),
    up.UploadComplete: (409, "upload_complete"),
    up.UploadFull: (409, "upload_full"),
    up.UploadIncomplete: (409, "upload_incomplete"),
    up.UploadExhausted: (409, "upload_exhausted"),
    up.ChecksumMismatch: (460, "checksum_mismatch"),
    up.BodyTooShort: (400, "body_too_short"),
    up.BodyTooLong: (400, "body_too_long"),
    up.UploadInProgress: (409, "upload_in_progress"),
}


def upload_answer(e: up.UploadRefused) -> tuple[int, str]:
    """The (status, code) of an upload refusal (the most specific row of its class)."""
    for cls in type(e).__mro__:
        if cls in UPLOAD_ERRORS:
            status, code = UPLOAD_ERRORS[cls]
            return status, code if isinstance(code, str) else code(e)
    raise KeyError(f"no answer for {type(e).__name__}")  # a refusal without a row: a bug


def upload_error(e: up.UploadRefused) -> ApiError:
    """The contract's answer to an upload refusal."""
    status, code = upload_answer(e)
    return ApiError(status, code, e.message)
