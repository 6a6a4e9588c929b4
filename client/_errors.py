"""The client's exception tree: every error says what happened and what to do about it.

::

    RewardClientError
    ├── BadRequestError          4xx but 408/429: the request is wrong; never retried
    │   ├── AuthenticationError  401: missing or wrong API key
    │   └── PayloadTooLargeError 413: a chunk is over the server's limit
    ├── OverloadedError          429 / 503 after every retry (carries ``retry_after``)
    ├── ServerError              5xx after every retry
    ├── TransportError           refused / reset / timed out, or 408, after every retry
    ├── DeadlineExceededError    the call's deadline passed (client side or server 504)
    └── ResponseMismatchError    the reply does not line up with the request (count, index, id)
"""

from __future__ import annotations

import re
from typing import NamedTuple

# The request lists whose entries a 422 names by index, on every route.
_LISTED_ENTRY = re.compile(r"^(items|query|labels|prompts)\[(\d+)\]")


def reindex_param(param: str | None, offset: int) -> str | None:
    """``items[3].ground_truth`` in a chunk starting at ``offset`` -> ``items[offset+3]...``;
    a param that names no list entry is returned as it is."""
    return _shift_entry(param, offset) if param else param


def _shift_entry(param: str, offset: int) -> str:
    if not offset:
        return param
    return _LISTED_ENTRY.sub(lambda m: f"{m.group(1)}[{int(m.group(2)) + offset}]", param, count=1)


class FieldError(NamedTuple):
    """One invalid field the server named in a 422: ``param`` (re-indexed to the caller's
    item list, e.g. ``items[1027].ground_truth.type``) and why it is invalid."""

    param: str
    message: str

    def entry(self) -> tuple[int, str] | None:
        """``items[3].ground_truth.type`` -> ``(3, "ground_truth.type")``; the field is
        ``""`` when the entry itself is named. None when ``param`` names no list entry
        (``config.dars``, the body as a whole)."""
        match = _LISTED_ENTRY.match(self.param)
        if match is None:
            return None
        return int(match.group(2)), self.param[match.end() :].lstrip(".")

    def shifted(self, offset: int) -> FieldError:
        """The same error, its entry index moved by ``offset`` (see :func:`reindex_param`)."""
        return self._replace(param=_shift_entry(self.param, offset))


class RewardClientError(Exception):
    """Base class of every error raised by :mod:`client`.

    ``url`` is the base URL of the last attempt (``None`` when no request was sent),
    ``attempts`` how many HTTP attempts the failed call made.
    """

    def __init__(self, message: str, *, url: str | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.attempts = attempts


class BadRequestError(RewardClientError):
    """The server refused the request (4xx). Retrying the same request cannot help.

    ``status`` is the HTTP status, ``param`` the offending field as the server names it,
    re-indexed to the caller's item list (``items[1027].ground_truth.type``), ``kind`` the
    server's error type. ``errors``: every invalid field of a 422 for an invalid body (the
    first is ``param``), so that all the bad items of a batch are known from one answer.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        param: str | None = None,
        kind: str | None = None,
        url: str | None = None,
        attempts: int = 0,
        errors: tuple[FieldError, ...] = (),
    ) -> None:
        super().__init__(message, url=url, attempts=attempts)
        self.status = status
        self.param = param
        self.kind = kind
        self.errors = errors


class AuthenticationError(BadRequestError):
    """401: pass ``api_key=`` (or set SHOP_R1_API_KEY) to the key the server was started with."""


class PayloadTooLargeError(BadRequestError):
    """413: lower ``chunk_size`` below the server's ``max_items`` (see GET /v1/config)."""


class OverloadedError(RewardClientError):
    """The server kept answering 429/503 (``retry_after`` is its last hint, in seconds)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after: float | None = None,
        url: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message, url=url, attempts=attempts)
        self.status = status
        self.retry_after = retry_after


class ServerError(RewardClientError):
    """The server kept failing with 5xx (500 is a server bug: report it with its log)."""

    def __init__(self, message: str, *, status: int, url: str | None = None, attempts: int = 0):
        super().__init__(message, url=url, attempts=attempts)
        self.status = status


class TransportError(RewardClientError):
    """No usable HTTP answer (refused, reset, timed out) from any URL after every retry."""


class DeadlineExceededError(RewardClientError):
    """The call's deadline passed before the server answered."""


class ResponseMismatchError(RewardClientError):
    """The reply does not line up with the request (result count, index or id differs).

    Nothing is zipped silently: the whole call fails, because a misaligned reward trains
    the policy on another sample's signal.
    """
