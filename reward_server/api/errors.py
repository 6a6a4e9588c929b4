"""Every error the API returns, in one shape, mapped from exception classes in one place.

Shape: ``{"error": {"message", "type", "param", "code"}}``. 422 malformed body or invalid
ground truth (``param`` names the field and item index), 401 missing or wrong API key,
403 a state-changing endpoint that is disabled, 413 over a limit (a body, an item count,
or more model items than the scorer's queue can ever hold), 429 scorer queue full
(Retry-After), 503 not ready (Retry-After), 504 deadline passed while queued, 500 a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from reward_server import telemetry
from reward_server.certainty.types import (
    ScorerDeadlineExceeded,
    ScorerNotReady,
    ScorerOverloaded,
    ScorerRequestTooLarge,
)
from reward_server.protocol import (
    describe_validation_error,
    describe_validation_errors,
    error_document,
)
from reward_server.service import CertaintyUnavailable, InvalidRequest

log = logging.getLogger(__name__)

# nginx's "client closed request": the status the latency series records for a request
# whose client went away before its body arrived. Nobody receives it.
CLIENT_CLOSED_REQUEST = 499


class ApiError(Exception):
    """An error with its HTTP status, raised by routes and middleware."""

    status = 422
    kind = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after


class Forbidden(ApiError):
    status, kind = 403, "permission_error"


class PayloadTooLarge(ApiError):
    status, kind = 413, "payload_too_large"


class NotReady(ApiError):
    status, kind = 503, "not_ready"


@dataclass(frozen=True)
class _Mapping:
    status: int
    kind: str


_STATUS_OF: dict[type[BaseException], _Mapping] = {
    InvalidRequest: _Mapping(422, "invalid_request_error"),
    ScorerRequestTooLarge: _Mapping(413, "payload_too_large"),
    ScorerOverloaded: _Mapping(429, "overloaded"),
    ScorerNotReady: _Mapping(503, "not_ready"),
    CertaintyUnavailable: _Mapping(503, "scorer_unavailable"),
    ScorerDeadlineExceeded: _Mapping(504, "deadline_exceeded"),
}


def error_response(
    status: int,
    kind: str,
    message: str,
    param: str | None = None,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
    errors: list[tuple[str, str]] | None = None,
) -> JSONResponse:
    """The one error shape; every error path goes through here. ``errors``: every invalid
    field of a 422 as ``(param, message)``."""
    telemetry.ERRORS.labels(kind).inc()
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        error_document(status, kind, message, param, errors), status_code=status, headers=headers
    )


def response_for(exc: BaseException) -> JSONResponse:
    """Map an exception to its error response (500 for anything unexpected: a bug)."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.kind, exc.message, exc.param, exc.retry_after)
    if isinstance(exc, ClientDisconnect):
        # The client hung up while sending its body: not a server bug, and not an answered
        # error (nobody is left to receive one), so neither logged nor in reward_errors_total.
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if isinstance(exc, StarletteHTTPException):
        # FastAPI's own errors (e.g. a body json cannot decode: nesting past the recursion
        # limit, integers over 4,300 digits) in the one shape; its 400 is our 422.
        status = 422 if exc.status_code == 400 else exc.status_code
        kind = "invalid_request_error" if status == 422 else "http_error"
        param = "body" if status == 422 else None
        # Its headers stay: a 405 must say which methods the route takes (Allow).
        return error_response(status, kind, str(exc.detail), param, headers=exc.headers)
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        if errors and errors[0].get("type") == "too_long" and errors[0].get("loc", ())[-1:] in (
            ("items",), ("query",)
        ):
            param, message = describe_validation_error(errors[0])
            return error_response(413, "payload_too_large", message, param)
        fields, total = describe_validation_errors(errors)
        param, message = fields[0] if fields else ("body", "invalid")
        if total > 1:
            message += f" (and {total - 1} more: see errors)"
        return error_response(422, "invalid_request_error", message, param, errors=fields)
    for cls, mapping in _STATUS_OF.items():
        if isinstance(exc, cls):
            retry = getattr(exc, "retry_after", None)
            if mapping.status in (503, 504) and retry is None:
                retry = 5.0
            param = getattr(exc, "param", None)
            return error_response(mapping.status, mapping.kind, str(exc), param, retry)
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal server error (a bug: please report)")


def register_error_handlers(app: FastAPI) -> None:
    """Route every exception class through :func:`response_for`."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return response_for(exc)

    # Every class but Exception is handled where it is raised; Exception (a bug) is answered
    # by the outermost middleware, which then re-raises it for the server to log.
    handled = (ApiError, RequestValidationError, StarletteHTTPException, ClientDisconnect)
    for cls in (*handled, *_STATUS_OF, Exception):
        app.add_exception_handler(cls, handle)
