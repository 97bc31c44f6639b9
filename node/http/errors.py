"""API errors: ``{"error": {"code", "message"}}`` with a fitting status, never a traceback."""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify

import storage

from node import log, peer_auth, play


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


# ---- playback and node-to-node auth: domain errors -> statuses (node.play, node.peer_auth) -------------
# (kept as its own block; the table of every package's errors may absorb it)

PLAY_ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    play.VideoNotFound: (404, "not_found", "no such video"),
    play.ObjectNotFound: (404, "not_found", "no such object"),
    play.NotReady: (409, "not_ready", ""),  # the message is the error's own (it names the state)
    peer_auth.MissingProof: (401, "unauthorized", "internal endpoints need the X-Shoal-Hop header "
                                                  "signed with the cluster key"),
    peer_auth.BadProof: (403, "forbidden", "the X-Shoal-Hop header is not valid for this cluster"),
}


def from_play_error(e: play.PlayError | peer_auth.PeerAuthError) -> ApiError:
    """The API error for a playback or peer-auth domain error (see PLAY_ERRORS)."""
    for cls in type(e).__mro__:
        if cls in PLAY_ERRORS:
            status, code, message = PLAY_ERRORS[cls]
            if isinstance(e, play.NotReady):
                return ApiError(status, code, str(e), state=e.state)
            return ApiError(status, code, message)
    raise TypeError(f"no status for {type(e).__name__}")  # pragma: no cover - a missing table entry
