"""API errors: ``{"error": {"code", "message"}}`` with a fitting status, never a traceback."""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify

import storage

from node import log


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
