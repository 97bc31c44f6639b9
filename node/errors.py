"""API errors: ``{"error": {"code", "message"}}`` with a fitting status, never a traceback."""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after
        self.extra = extra


def error_response(status: int, code: str, message: str, *, retry_after: int | None = None,
                   **extra: Any) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, **extra}}
    resp = jsonify(body)
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def from_api_error(e: ApiError) -> Response:
    return error_response(e.status, e.code, e.message, retry_after=e.retry_after, **e.extra)
