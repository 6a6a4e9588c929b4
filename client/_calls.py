"""One logical HTTP call with retries, failover and a deadline, as an I/O-free state machine.

The sync and async clients drive it the same way::

    call = CallState(pool, policy, deadline, api_key)
    while True:
        url, wait = call.plan()          # raises when no attempt is left
        sleep(wait)
        try:
            response = post(url + path, json=payload, headers=call.headers(),
                            timeout=call.attempt_timeout())
        except httpx.TransportError as exc:
            call.transport_failed(url, exc)
            continue
        body = call.handle(url, response)   # raises terminal errors; None means retry
        if body is not None:
            return body
"""

from __future__ import annotations

from typing import Any, NamedTuple

import httpx

from client._errors import (
    AuthenticationError,
    BadRequestError,
    DeadlineExceededError,
    FieldError,
    OverloadedError,
    PayloadTooLargeError,
    RewardClientError,
    ServerError,
    TransportError,
    reindex_param,
)
from client._policy import Deadline, EndpointPool, RetryPolicy, parse_retry_after

DEADLINE_HEADER = "X-Request-Timeout"


class ErrorFields(NamedTuple):
    """What the server's one error shape says (``errors``: every invalid field of a 422)."""

    message: str
    param: str | None = None
    kind: str | None = None
    errors: tuple[FieldError, ...] = ()


def error_fields(response: httpx.Response) -> ErrorFields:
    """The fields of the server's one error shape, tolerating other bodies."""
    try:
        body = response.json()
    except ValueError:
        return ErrorFields(response.text[:300] or response.reason_phrase)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ErrorFields(str(body)[:300])
    listed = error.get("errors")
    errors = tuple(
        FieldError(str(entry.get("param")), str(entry.get("message", "")))
        for entry in (listed if isinstance(listed, list) else ())
        if isinstance(entry, dict)
    )
    return ErrorFields(str(error.get("message", "")), error.get("param"), error.get("type"), errors)


class CallState:
    """Attempt bookkeeping of one call: which URL next, how long to wait, what to raise."""

    def __init__(
        self,
        pool: EndpointPool,
        policy: RetryPolicy,
        deadline: Deadline,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        item_offset: int = 0,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.deadline = deadline
        self.api_key = api_key
        self.connect_timeout = connect_timeout
        self.item_offset = item_offset
        self.attempts = 0
        self.last_url: str | None = None
        self.last_error: RewardClientError | None = None
        self._min_wait = 0.0

    # -- planning -------------------------------------------------------------------------
    def plan(self) -> tuple[str, float]:
        """The URL of the next attempt and how long to sleep first; raises when none is left."""
        if self.attempts >= self.policy.max_attempts:
            assert self.last_error is not None
            self.last_error.attempts = self.attempts
            raise self.last_error
        url, wait = self.pool.pick(avoid=self.last_url)
        failed_over = self.last_url is not None and url != self.last_url
        wait = max(wait, 0.0 if failed_over and wait == 0 else self._min_wait)
        if wait >= self.deadline.remaining():
            raise self.deadline_error(
                f"the next retry would start after the deadline ({self.deadline.seconds:g}s)"
            )
        self.attempts += 1
        self.last_url = url
        return url, wait

    def headers(self) -> dict[str, str]:
        remaining = max(0.001, self.deadline.remaining())
        headers = {DEADLINE_HEADER: f"{remaining:.3f}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def attempt_timeout(self) -> httpx.Timeout:
        remaining = max(0.001, self.deadline.remaining())
        return httpx.Timeout(remaining, connect=min(remaining, self.connect_timeout))

    # -- outcomes -------------------------------------------------------------------------
    def transport_failed(self, url: str, exc: Exception) -> None:
        """Record a transport error; raises DeadlineExceededError when time is up."""
        if self.deadline.expired():
            raise self.deadline_error(f"no answer from {url} in time ({type(exc).__name__})")
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            self.pool.demote(url, self.policy.endpoint_cooldown)
        self._min_wait = self.policy.backoff(self.attempts)
        self.last_error = TransportError(
            f"could not reach the reward service at {url}: {type(exc).__name__}: {exc}. "
            "Check that it runs (GET /readyz), that the URL is right, or add more base URLs.",
            url=url,
            attempts=self.attempts,
        )

    def handle(self, url: str, response: httpx.Response) -> Any | None:
        """The JSON body of a 2xx answer; None to retry; raises a terminal error."""
        status = response.status_code
        if 200 <= status < 300:
            self.pool.mark_ok(url)
            try:
                return response.json()
            except ValueError:
                self._retry_later(
                    url,
                    ServerError(
                        f"{url} answered {status} with a body that is not JSON",
                        status=status,
                        url=url,
                        attempts=self.attempts,
                    ),
                )
                return None
        fields = error_fields(response)
        message = fields.message
        if status == 429 or status == 503:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            error = OverloadedError(
                f"the reward service at {url} is {'overloaded' if status == 429 else 'not ready'}"
                f" ({status}: {message}). Lower the trainer's concurrency, add servers or "
                "raise the timeout.",
                status=status,
                retry_after=retry_after,
                url=url,
                attempts=self.attempts,
            )
            self._retry_later(url, error, retry_after)
            return None
        if status == 408:
            # The server timed out waiting for this request's headers or body (a slow or
            # stalled link): the same request on a fresh connection can succeed.
            self._retry_later(
                url,
                TransportError(
                    f"{url} answered 408 ({message}): the request did not arrive in time",
                    url=url,
                    attempts=self.attempts,
                ),
            )
            return None
        if status == 504:
            if self.deadline.remaining() <= 0.05:
                raise self.deadline_error(f"the server gave up: {message}")
            self._retry_later(
                url,
                ServerError(
                    f"{url} answered 504 ({message}); raise the timeout or add servers",
                    status=status,
                    url=url,
                    attempts=self.attempts,
                ),
            )
            return None
        if status >= 500:
            hint = (
                "a server bug: report it with the server log"
                if status == 500
                else "a proxy or server failure"
            )
            self._retry_later(
                url,
                ServerError(
                    f"{url} answered {status} ({message}): {hint}",
                    status=status,
                    url=url,
                    attempts=self.attempts,
                ),
            )
            return None
        raise self._bad_request(url, status, fields)

    # -- helpers --------------------------------------------------------------------------
    def _retry_later(
        self, url: str, error: RewardClientError, retry_after: float | None = None
    ) -> None:
        self.last_error = error
        self._min_wait = self.policy.backoff(self.attempts)
        if retry_after is not None:
            # Honoured through the pool: this URL is not used again before the hint passes
            # (another free URL is tried at once; with none free, plan() waits for it).
            self.pool.block(url, min(retry_after, self.policy.max_retry_after))

    def _bad_request(self, url: str, status: int, fields: ErrorFields) -> BadRequestError:
        message = fields.message
        param = reindex_param(fields.param, self.item_offset)
        errors = tuple(e.shifted(self.item_offset) for e in fields.errors)
        where = f" (field {param})" if param else ""
        error_class: type[BadRequestError]
        if status == 401:
            error_class = AuthenticationError
            text = (f"{url} refused the API key ({message}): pass api_key= / set "
                    "SHOP_R1_API_KEY to the key the server was started with")
        elif status == 413:
            error_class = PayloadTooLargeError
            text = (f"{url}: {message}{where}: lower chunk_size to at most the server's "
                    "max_items (GET /v1/config)")
        else:
            error_class = BadRequestError
            text = (f"{url} rejected the request with {status}{where}: {message}. Fix the "
                    "input; retrying the same request cannot succeed.")
        return error_class(
            text, status=status, param=param, kind=fields.kind, errors=errors, url=url,
            attempts=self.attempts,
        )

    def deadline_error(self, why: str) -> DeadlineExceededError:
        """The error to raise when the deadline stops the call (``why`` says where)."""
        last = f"; last error: {self.last_error.message}" if self.last_error else ""
        return DeadlineExceededError(
            f"deadline of {self.deadline.seconds:g}s exceeded after {self.attempts} attempt(s): "
            f"{why}{last}. Raise timeout= or reduce the load on the reward service.",
            url=self.last_url,
            attempts=self.attempts,
        )
