"""Bearer-key rejection time does not depend on how much of the key a guess gets right.

The middleware hashes the presented key and the expected one to SHA-256 digests and
compares them with ``hmac.compare_digest``, so by construction no early exit can reveal a
common prefix (``tests/reliability/test_auth_and_reload.py`` checks the construction).
This benchmark measures it: the time to reject a guess that is wrong only in its last
byte ("near") against one wrong in its first byte ("far"), through the real middleware,
interleaved in rounds so that the machine's noise hits both alike; and the same for the
named baseline, a plain ``==`` on the raw key, as a naive implementation would do.

    python bench/bench_auth.py [--rounds 15] [--calls 2000]

Prints a table, then one JSON line: ``ratio_near_far`` (ours, ~1.0 means no leak),
``baseline_ratio_near_far`` and ``ratio_vs_baseline`` (ours' rejection time over the
baseline's: the price of hashing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reward_server.api.errors import error_response
from reward_server.api.middleware import BearerAuthMiddleware

KEY = "k3y-" + "0123456789abcdef" * 8


class PlainEqualityAuth:
    """The baseline: the raw presented key compared with ``==``; the same 401 answer."""

    def __init__(self, app, api_key: str) -> None:
        self.app = app
        self.expected = api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or token.strip() != self.expected:
            response = error_response(401, "authentication_error", "missing or invalid API key")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def ok_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def call(app, header: bytes) -> int:
    scope = {"type": "http", "path": "/v1/rewards", "method": "POST",
             "headers": [(b"authorization", header)]}
    status = 0

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def per_call(app, header: bytes, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await call(app, header)
    return (time.perf_counter() - started) / calls


async def measure(app, rounds: int, calls: int) -> tuple[list[float], list[float]]:
    near = f"Bearer {KEY[:-1]}!".encode()
    far = f"Bearer !{KEY[1:]}".encode()
    assert await call(app, near) == 401 and await call(app, far) == 401
    near_times, far_times = [], []
    for _ in range(rounds):
        near_times.append(await per_call(app, near, calls))
        far_times.append(await per_call(app, far, calls))
    return near_times, far_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    sides = {
        "ours (sha256 + compare_digest)": BearerAuthMiddleware(ok_app, KEY, ["/healthz"]),
        "baseline (raw ==)": PlainEqualityAuth(ok_app, KEY),
    }
    figures = {}
    print(f"{'side':<34}{'near us':>10}{'far us':>10}{'near/far':>10}")
    for name, app in sides.items():
        near, far = asyncio.run(measure(app, args.rounds, args.calls))
        near_us, far_us = statistics.median(near) * 1e6, statistics.median(far) * 1e6
        figures[name] = (near_us, far_us, min(near) / min(far))
        print(f"{name:<34}{near_us:>10.2f}{far_us:>10.2f}{figures[name][2]:>10.3f}")
    ours, baseline = figures.values()
    print(json.dumps({
        "bench": "auth",
        "ratio_near_far": round(ours[2], 3),
        "baseline_ratio_near_far": round(baseline[2], 3),
        "reject_us": round(ours[0], 2),
        "baseline_reject_us": round(baseline[0], 2),
        "ratio_vs_baseline": round(ours[0] / baseline[0], 3),
    }))


if __name__ == "__main__":
    main()
