"""What the connection limits cost: the same app under uvicorn's own HTTP protocol and
under the service's limited one (header size and time; each upload's deadline, minimum
rate and pause; the answer's minimum rate and pause; the connection cap with eviction).

Both servers serve ``bench/http_ceiling.py`` (a bare FastAPI endpoint, so the protocol is
a visible share of each request) with identical uvicorn settings; ``wrk`` sends one-item
requests from 64 connections, the sides alternating, ``--repeats`` times each. The named
baseline is uvicorn's ``HttpToolsProtocol``; ``ratio_vs_baseline`` is the limited
protocol's requests/s over the baseline's (1.0: the limits cost nothing measurable).

    python bench/bench_connection_limits.py [--seconds 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _bench_http():
    spec = importlib.util.spec_from_file_location("bench_http", REPO / "bench" / "bench_http.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve(port: int, limited: bool) -> None:
    """Run the ceiling app on ``port`` (called in the server subprocess)."""
    import uvicorn

    from reward_server.api.connection_limits import (
        ConnectionLimits,
        LimitedConfig,
        default_max_connections,
    )

    common = {"host": "127.0.0.1", "port": port, "log_level": "warning", "access_log": False}
    if limited:
        limits = ConnectionLimits(max_connections=default_max_connections())
        config = LimitedConfig("bench.http_ceiling:app", connection_limits=limits, **common)
    else:
        config = uvicorn.Config("bench.http_ceiling:app", http="httptools", **common)
    uvicorn.Server(config).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1] == "limited")
        return 0
    if shutil.which("wrk") is None:
        sys.exit("bench_connection_limits needs wrk (apt-get install wrk)")
    http = _bench_http()
    workdir = Path(tempfile.mkdtemp(prefix="bench-limits-"))
    bodies = workdir / "one.jsonl"
    item = {"completion": "{}", "ground_truth": {"type": "terminate"}}
    bodies.write_text("\n".join(json.dumps({"items": [{"id": i, **item}]}) for i in range(100)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ports = {"baseline (uvicorn httptools)": http.free_port(), "limited": http.free_port()}
    servers = {
        side: http.start([sys.executable, __file__, "--serve", str(port),
                          "limited" if side == "limited" else "plain"], port, "/v1/rewards", env)
        for side, port in ports.items()
    }
    rates: dict[str, list[float]] = {side: [] for side in ports}
    try:
        for port in ports.values():
            http.run_wrk(port, bodies, args.connections, 2)  # warm-up
        for _ in range(args.repeats):
            for side, port in ports.items():
                sample = http.run_wrk(port, bodies, args.connections, args.seconds)
                rates[side].append(sample["requests"] / sample["seconds"])
    finally:
        for process in servers.values():
            http.stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {side: statistics.median(values) for side, values in rates.items()}
    print(f"{'side':<32}{'requests/s (median)':>22}  rounds")
    for side, value in medians.items():
        rounds = " ".join(f"{rate:.0f}" for rate in rates[side])
        print(f"{side:<32}{value:>22.0f}  {rounds}")
    baseline, limited = medians.values()
    print(json.dumps({
        "bench": "connection_limits",
        "baseline_requests_per_s": round(baseline, 1),
        "limited_requests_per_s": round(limited, 1),
        "ratio_vs_baseline": round(limited / baseline, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
