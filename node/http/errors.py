"""Errors as HTTP: the one table from what went wrong to ``(status, code, retry_after)``.

Below the HTTP edge, errors carry meaning, not statuses: ``lifecycle.Refused`` (the record does
not allow it), ``storage.StorageUnavailable`` / ``storage.StorageError``, the upload and play
errors.  Here :data:`ANSWERS` maps each to its answer, and :func:`answer_for` (pure) gives the
answer to any exception; node.http.app's one error handler and the fast lane both use it, so a
client gets the same status and body on either path.  The body is always the contract's shape
``{"error": {"code", "message", ...}}``; never a traceback or a local path.

How an exception finds its row: the first class of its MRO that has one.  A row's ``code`` or
``message`` of None takes the error's own ``code`` / ``message`` attribute; an error's ``extra``
(a dict) goes into the body beside them.  Anything without a row is a bug: 500
``internal_error`` (the handler logs it with its trace).

Routes raise :class:`ApiError` for what only the edge knows (a bad header, a missing token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from quart import Response, jsonify
from werkzeug.exceptions import HTTPException

import storage

from node import log, peer_auth, play
from node.records.lifecycle import Refused
from node.upload import errors as up


class ApiError(Exception):
    """An answer only the HTTP edge can decide (raised by routes, never below node/http)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after
        self.extra = extra


@dataclass(frozen=True)
class Row:
    """One line of the table.  ``status`` None: the error carries its own ``status``."""

    status: int | None
    code: str | Callable[[Any], str] | None = None  # None: the error's own ``code``; callable: made from the error
    retry_after: int | None = None  # seconds, sent as Retry-After
    message: str | None = None  # None: the error's own ``message``; "{error}" is str(error)


class Answer(NamedTuple):
    status: int
    code: str
    message: str
    extra: dict[str, Any] = {}
    retry_after: int | None = None


INTERNAL = Answer(500, "internal_error", "the node failed to handle this request; see its log")

def _snake(header: str) -> str:
    """A refused header's name as a code: ``Upload-Offset`` -> ``upload_offset``."""
    return header.lower().replace("-", "_")


# ---- the table --------------------------------------------------------------------------------
ANSWERS: dict[type[BaseException], Row] = {
    # storage (storage/errors.py): the client may retry either
    storage.StorageUnavailable: Row(503, "storage_unavailable", 2,
                                    "object storage is unreachable; retry shortly"),
    storage.StorageError: Row(503, "storage_error", 2, "object storage refused the request: {error}"),
    # records (node/records): a transition the record does not allow now
    Refused: Row(409),
    # upload (node/upload/errors.py draws the tree; docs/api.md and docs/uploads.md list the answers)
    **{cls: Row(status, code) for cls, (status, code) in {
        up.TusVersionMissing: (412, "tus_version_required"),
        up.TusVersionUnsupported: (412, "tus_version_unsupported"),
        up.HeaderMissing: (400, lambda e: f"{_snake(e.header)}_required"),
        up.HeaderMalformed: (400, lambda e: f"bad_{_snake(e.header)}"),
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
    }.items()},
    # play (node/play) and node-to-node proofs (node/peer_auth.py)
    play.VideoNotFound: Row(404, "not_found", message="no such video"),
    play.ObjectNotFound: Row(404, "not_found", message="no such object"),
    play.NotReady: Row(409, "not_ready"),  # the message is the error's own (it names the state)
    peer_auth.MissingProof: Row(401, "unauthorized", message="internal endpoints need the X-Shoal-Hop "
                                "header signed with the cluster key"),
    peer_auth.BadProof: Row(403, "forbidden", message="the X-Shoal-Hop header is not valid for this cluster"),
}

#: werkzeug's own answers (routing, protocol), by status
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
              413: "too_large"}


def answer_for(exc: BaseException) -> Answer:
    """The answer to ``exc``: status, code, message, extra body fields and Retry-After (pure)."""
    if isinstance(exc, ApiError):
        return Answer(exc.status, exc.code, exc.message, dict(exc.extra), exc.retry_after)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return Answer(status, HTTP_CODES.get(status, "http_error"), exc.description or exc.name)
    for cls in type(exc).__mro__:
        row = ANSWERS.get(cls)
        if row is not None:
            return _apply(row, exc)
    return INTERNAL


def _apply(row: Row, exc: BaseException) -> Answer:
    status = row.status if row.status is not None else getattr(exc, "status", None)
    code = row.code if row.code is not None else getattr(exc, "code", None)
    if callable(code):
        code = code(exc)
    if not isinstance(status, int) or not isinstance(code, str):
        return INTERNAL  # a row that needs what the error does not carry: a bug, answered safely
    if row.message is not None:
        message = row.message.replace("{error}", str(exc))
    else:
        message = str(getattr(exc, "message", None) or exc)
    extra = getattr(exc, "extra", None)
    return Answer(status, code, message, dict(extra) if isinstance(extra, dict) else {}, row.retry_after)


def note(ctx: Any, exc: BaseException, path: str) -> None:
    """The side of an answer that is not pure: storage failures are counted and logged once."""
    if isinstance(exc, storage.StorageUnavailable):
        ctx.metrics.events.storage_unavailable_responses.inc()
        log.warning("storage_unavailable", path=path, error=str(exc))
    elif isinstance(exc, storage.StorageError):
        ctx.metrics.events.storage_error_responses.inc()
        log.warning("storage_error", path=path, error=str(exc))


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


def answer_response(a: Answer) -> Response:
    return error_response(a.status, a.code, a.message, retry_after=a.retry_after, **a.extra)


def from_api_error(e: ApiError) -> Response:
    return answer_response(answer_for(e))


def storage_failure(ctx: Any, e: storage.StorageError, path: str) -> ApiError:
    """The answer to a storage failure as an ApiError (counted and logged once), for the fast
    lane: 503 ``storage_unavailable`` or ``storage_error`` with Retry-After (see the table)."""
    note(ctx, e, path)
    a = answer_for(e)
    return ApiError(a.status, a.code, a.message, retry_after=a.retry_after, **a.extra)


def upload_answer(e: up.UploadRefused) -> tuple[int, str]:
    """The (status, code) of an upload refusal (its row in the table)."""
    a = answer_for(e)
    if a is INTERNAL:
        raise KeyError(f"no answer for {type(e).__name__}")  # a refusal without a row: a bug
    return a.status, a.code


def upload_error(e: up.UploadRefused) -> ApiError:
    """The contract's answer to an upload refusal, as an ApiError (for handlers that add headers)."""
    a = answer_for(e)
    return ApiError(a.status, a.code, a.message, retry_after=a.retry_after, **a.extra)


def from_play_error(e: play.PlayError | peer_auth.PeerAuthError) -> ApiError:
    """The API error for a playback or peer-auth domain error (its row in the table)."""
    a = answer_for(e)
    if a is INTERNAL:
        raise TypeError(f"no status for {type(e).__name__}")  # a missing table row: a bug
    return ApiError(a.status, a.code, a.message, retry_after=a.retry_after, **a.extra)
