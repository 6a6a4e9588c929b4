"""Retry policy, endpoint rotation and deadlines: the pure (I/O-free) half of the clients.

Both clients share this logic; only sleeping and sending differ between them.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried and how long to wait between attempts.

    Retried: transport errors, 408, 429 and 5xx (never another 4xx). The wait before retry
    ``n`` (1-based) is full jitter, ``uniform(0, min(max_backoff, base_backoff * 2**(n-1)))``,
    and never less than the server's ``Retry-After`` (itself capped by ``max_retry_after``).
    A retry that would start after the call's deadline is not made.
    """

    max_attempts: int = 5
    base_backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    endpoint_cooldown: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("backoff and retry-after bounds must be non-negative")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Full-jitter wait before retry number ``retry`` (1-based)."""
        ceiling = min(self.max_backoff, self.base_backoff * (2 ** max(0, retry - 1)))
        return (rng or random).uniform(0, ceiling)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Deadline:
    """An absolute point on the monotonic clock by which a call must have its answer."""

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0


class EndpointPool:
    """Round-robin over base URLs, skipping those that failed recently.

    Two kinds of cool-down: after ``Retry-After`` a URL is *blocked* (never used before the
    server's hint), after a refused connection it is *demoted* (used only when no other URL
    is free, so a single restarted server is picked up again at once). ``pick()`` returns
    the next free URL in turn, or the one unblocked soonest and how long until then.
    Thread-safe (the sync client sends chunks from worker threads).
    """

    def __init__(self, urls: list[str]) -> None:
        if not urls:
            raise ValueError("at least one base URL is required")
        self.urls = [url.rstrip("/") for url in urls]
        self._next = 0
        self._blocked_until = [0.0] * len(self.urls)
        self._demoted_until = [0.0] * len(self.urls)
        self._lock = threading.Lock()

    def pick(self, avoid: str | None = None) -> tuple[str, float]:
        """``(url, wait_seconds)``; prefers a URL other than ``avoid`` when one is free."""
        with self._lock:
            now = time.monotonic()
            count = len(self.urls)
            order = [(self._next + step) % count for step in range(count)]
            unblocked = [i for i in order if self._blocked_until[i] <= now]
            healthy = [i for i in unblocked if self._demoted_until[i] <= now]
            candidates = healthy or unblocked
            preferred = [i for i in candidates if self.urls[i] != avoid] or candidates
            if preferred:
                chosen, wait = preferred[0], 0.0
            else:
                chosen = min(order, key=lambda i: self._blocked_until[i])
                wait = self._blocked_until[chosen] - now
            self._next = (chosen + 1) % count
            return self.urls[chosen], max(0.0, wait)

    def block(self, url: str, seconds: float) -> None:
        """Do not use ``url`` for ``seconds`` (the server's Retry-After)."""
        with self._lock:
            index = self.urls.index(url)
            self._blocked_until[index] = max(self._blocked_until[index], time.monotonic() + seconds)

    def demote(self, url: str, seconds: float) -> None:
        """Prefer other URLs over ``url`` for ``seconds`` (connection refused)."""
        with self._lock:
            index = self.urls.index(url)
            self._demoted_until[index] = max(self._demoted_until[index], time.monotonic() + seconds)

    def mark_ok(self, url: str) -> None:
        with self._lock:
            self._demoted_until[self.urls.index(url)] = 0.0


def split_urls(urls: str | list[str] | tuple[str, ...]) -> list[str]:
    """Base URLs from a list or a comma-separated string (``"http://a:8000,http://b:8000"``)."""
    if isinstance(urls, str):
        urls = urls.split(",")
    cleaned = [url.strip() for url in urls if url and url.strip()]
    for url in cleaned:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base URL {url!r} must start with http:// or https://")
    if not cleaned:
        raise ValueError("at least one base URL is required")
    return cleaned
