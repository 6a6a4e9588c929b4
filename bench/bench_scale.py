"""The Ray Serve application against the single-process service, same run, same machine.

(a) Rules, one item per request (``wrk``, 32 connections): items/s through Ray Serve
    with 1 and with 2 ingress replicas, each as a ratio of ``shop-r1-reward serve``
    (one uvicorn process), behind Serve's Python proxy and behind HAProxy (a second
    local cluster, ``--serve-proxy haproxy``). Samples alternate between the sides;
    medians are reported. The answers of both sides are checked equal first (timings
    aside). Every side runs with an API key (HAProxy mode requires one).
(b) GRPO traffic to the model deployment (2 replicas): 8 prompts x 8 completions from
    the shopping steps, sent one completion per request, all at once, in random order.
    Measured on the replicas themselves: prompt encodings (each is one prefill forward
    pass of the prompt, plus one forward of the group's packed completions) and tokens
    run through the model, as a ratio of the same 64 items sent as one request (every
    group in one call: the ideal). With prompt-hash routing and with Ray's default
    (balanced) routing. Self-certainty of every item is checked equal (1e-5 relative)
    between the per-sample and the one-request answers.
(c) Latency of one-item rules requests while the ingress autoscales 1 -> 2 replicas
    under a steady load, and after it settled, in consecutive 2 s ``wrk`` windows
    (p50: median of the windows' p50; p99: the highest window p99; the first window
    with two replicas is the hand-over, counted in neither phase), next to the
    single-process service under the same load.
(b) and (c) run on the HAProxy cluster, the recommended entry (the model path does not
    pass through the proxy; the ingress replicas, which (c) scales, do not limit the
    Python proxy's throughput, the proxy does).

    python bench/bench_scale.py [--seconds 6] [--repeats 3] [--model embedded|DIR]

Ends with one JSON line: {"bench": "scale", ..., "ratio_vs_baseline": (a) with 2 ingress
replicas behind HAProxy, the recommended entry}. Needs the ``ray`` extra and ``wrk``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_http import free_port, start, stop  # noqa: E402
from reward_server.config import ServerSettings  # noqa: E402
from reward_server.ray_serve.settings import RaySettings  # noqa: E402
from tests.ray.workload import grpo_groups, rules_items, without_timings  # noqa: E402

APP = "shop-r1-reward"
CONNECTIONS = 32
API_KEY = "bench-scale-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
WRK_SCRIPT = REPO / "bench" / "wrk_post.lua"


def run_wrk(port: int, bodies: Path, connections: int, seconds: float) -> dict:
    """One ``wrk`` run (authorised) of the bodies in turn; its JSON figures."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
         "-H", f"Authorization: Bearer {API_KEY}", "-s", str(WRK_SCRIPT),
         f"http://127.0.0.1:{port}", "--", str(bodies)],
        capture_output=True, text=True, check=True,
    )
    figures = json.loads([x for x in result.stdout.splitlines() if x.startswith("{")][-1])
    if figures["errors"] or figures["non2xx"]:
        raise RuntimeError(f"wrk saw errors: {figures}")
    return figures


# ---------------------------------------------------------------- (a) rules throughput
def _write_bodies(path: Path, items: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps({"items": [item]}) for item in items))
    return path


def _check_same(baseline_url: str, ray_url: str, items: list[dict]) -> None:
    body = {"items": items}
    want = httpx.post(baseline_url + "/v1/rewards", json=body, headers=AUTH, timeout=60).json()
    got = httpx.post(ray_url + "/v1/rewards", json=body, headers=AUTH, timeout=60).json()
    if without_timings(got) != without_timings(want):
        raise SystemExit("the Ray application's answer differs from the single process")


def _rules_cluster(replicas: int, **extra: Any) -> RaySettings:
    return RaySettings(ingress_min_replicas=replicas, ingress_max_replicas=replicas,
                       ingress_num_cpus=0, **extra)


def _redeploy(server: ServerSettings, cluster: RaySettings) -> None:
    from ray import serve

    from reward_server.ray_serve.app import build_application
    from reward_server.ray_serve.launch import wait_ready

    handle = serve.run(build_application(server, cluster), name=APP, route_prefix="/")
    wait_ready(handle, 600)


def rules_throughput(baseline_port: int, ray_port: int, bodies: Path, replicas: int,
                     seconds: float, repeats: int) -> dict[str, float]:
    for port in (baseline_port, ray_port):  # warm-up
        run_wrk(port, bodies, CONNECTIONS, 2)
    base, ray_side = [], []
    for _ in range(repeats):
        base.append(run_wrk(baseline_port, bodies, CONNECTIONS, seconds))
        ray_side.append(run_wrk(ray_port, bodies, CONNECTIONS, seconds))

    def rate(samples: list[dict]) -> float:
        return statistics.median(s["requests"] / s["seconds"] for s in samples)

    return {
        "replicas": replicas,
        "baseline_items_per_s": rate(base),
        "ray_items_per_s": rate(ray_side),
        "baseline_p50_ms": statistics.median(s["p50_ms"] for s in base),
        "ray_p50_ms": statistics.median(s["p50_ms"] for s in ray_side),
        "ratio": rate(ray_side) / rate(base),
    }


# ---------------------------------------------------------------- (b) GRPO per sample
def _model_work() -> dict[str, int]:
    from ray import serve

    handle = serve.get_deployment_handle("CertaintyModel", APP)
    totals = {"prompt_encodings": 0, "tokens": 0, "batches": 0, "items": 0}
    for stats in handle.broadcast("stats").results(timeout_s=120):
        for key in totals:
            totals[key] += stats[key]
    return totals


async def _post_each(url: str, items: list[dict], order: list[int]) -> list[dict]:
    results: list[dict] = [{}] * len(items)
    limits = httpx.Limits(max_connections=len(items))
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=600,
                                 limits=limits) as client:

        async def one(index: int) -> None:
            answer = await client.post("/v1/rewards", json={"items": [items[index]]})
            answer.raise_for_status()
            results[index] = answer.json()["results"][0]

        await asyncio.gather(*(one(i) for i in order))
    return results


def _measured(send: Any) -> tuple[Any, dict[str, int], float]:
    before = _model_work()
    started = time.perf_counter()
    results = send()
    seconds = time.perf_counter() - started
    after = _model_work()
    return results, {k: after[k] - before[k] for k in after}, seconds


def grpo_efficiency(url: str, seed: int) -> dict[str, Any]:
    items = [item for group in grpo_groups(8, 8, seed=seed) for item in group]
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    batch, ideal, batch_s = _measured(
        lambda: httpx.post(url + "/v1/rewards", json={"items": items}, headers=AUTH,
                           timeout=600).json()["results"]
    )
    singles, work, singles_s = _measured(lambda: asyncio.run(_post_each(url, items, order)))
    worst = 0.0
    for one, many in zip(singles, batch, strict=True):
        a, b = one["components"]["self_certainty"], many["components"]["self_certainty"]
        if (a is None) != (b is None):
            raise SystemExit(f"per-sample and one-request answers differ: {one} / {many}")
        if a is not None:
            worst = max(worst, abs(a - b) / max(abs(b), 1e-12))
    if worst > 1e-5:
        raise SystemExit(f"self-certainty differs by {worst:.2e} (relative) between the sides")
    return {
        "one_request": ideal,
        "per_sample": work,
        "one_request_s": batch_s,
        "per_sample_s": singles_s,
        "encoding_efficiency": ideal["prompt_encodings"] / work["prompt_encodings"],
        "token_efficiency": ideal["tokens"] / work["tokens"],
        "max_relative_difference": worst,
    }


# ---------------------------------------------------------------- (c) autoscaling
def _ingress_replicas() -> int:
    from ray import serve

    status = serve.status().applications.get(APP)
    if status is None:
        return 0
    return status.deployments["RewardIngress"].replica_states.get("RUNNING", 0)


def latency_while_scaling(ray_port: int, baseline_port: int, bodies: Path,
                          window_s: float, limit_s: float) -> dict[str, Any]:
    windows = []
    started = time.monotonic()
    scaled = 0  # windows that started with the second replica running
    while time.monotonic() - started < limit_s and scaled < 4:
        replicas = _ingress_replicas()
        figures = run_wrk(ray_port, bodies, CONNECTIONS, window_s)
        scaled += replicas >= 2
        # The first window with two replicas is the hand-over; the next ones are settled.
        phase = "ramp" if replicas < 2 else ("hand-over" if scaled == 1 else "settled")
        windows.append({"t_s": round(time.monotonic() - started, 1), "replicas": replicas,
                        "phase": phase, **figures})
    ramp = [w for w in windows if w["phase"] == "ramp"]
    settled = [w for w in windows if w["phase"] == "settled"]
    if not ramp or not settled:
        raise SystemExit(f"the ingress did not scale 1 -> 2 within {limit_s:g}s: {windows}")
    baseline = [run_wrk(baseline_port, bodies, CONNECTIONS, window_s) for _ in range(3)]

    def phase(part: list[dict]) -> dict[str, float]:
        return {"p50_ms": statistics.median(w["p50_ms"] for w in part),
                "p99_ms": max(w["p99_ms"] for w in part),
                "items_per_s": statistics.median(w["requests"] / w["seconds"] for w in part)}

    return {"windows": windows, "ramp": phase(ramp), "settled": phase(settled),
            "baseline": phase(baseline), "scaled_after_s": settled[0]["t_s"]}


# ---------------------------------------------------------------- main
def _model_and_scaling_parts(report: dict[str, Any], args: argparse.Namespace, skip: set[str],
                             url: str, ray_port: int, baseline_port: int, bodies: Path) -> None:
    if "b" not in skip:
        window = {} if args.group_window_ms is None else {
            "group_window_ms": args.group_window_ms}
        model_server = ServerSettings(model=args.model, port=ray_port, api_key=API_KEY,
                                      log_level="warning")
        report["grpo"] = {}
        for routing in ("prompt_hash", "balanced"):
            _redeploy(model_server, RaySettings(
                ingress_num_cpus=0, ingress_min_replicas=1, ingress_max_replicas=1,
                model_num_cpus=0, model_min_replicas=2, model_max_replicas=2,
                model_routing=routing, **window))
            report["grpo"][routing] = grpo_efficiency(url, seed=4)
        report["grpo"]["group_window_ms"] = (
            args.group_window_ms if args.group_window_ms is not None
            else RaySettings().group_window_ms)
    if "c" not in skip:
        _redeploy(ServerSettings(model="none", port=ray_port, api_key=API_KEY,
                                 log_level="warning"), RaySettings(
            ingress_num_cpus=0, ingress_min_replicas=1, ingress_max_replicas=2,
            ingress_target_ongoing_requests=8, autoscale_look_back_s=4.0,
            upscale_delay_s=2.0, downscale_delay_s=600.0))
        report["autoscaling"] = latency_while_scaling(
            ray_port, baseline_port, bodies, window_s=2.0, limit_s=120.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="wrk duration per sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="embedded", help="model of part (b)")
    parser.add_argument("--group-window-ms", type=float, default=None,
                        help="override the model replicas' group window in (b)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_scale needs wrk (apt-get install wrk)")
    skip = set(filter(None, args.skip.split(",")))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from reward_server.ray_serve.launch import start as start_ray

    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    # wrk cycles through these bodies; each is a distinct shopping step (under 1,000 exist).
    bodies = _write_bodies(workdir / "one.jsonl", rules_items(500, seed=1))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    baseline_port, ray_port = free_port(), free_port()
    baseline = start([sys.executable, "-m", "reward_server.cli", "serve", "--model", "none",
                      "--port", str(baseline_port), "--api-key", API_KEY, "--log-level",
                      "warning"], baseline_port, "/readyz", env)
    baseline_url = f"http://127.0.0.1:{baseline_port}"
    rules_server = ServerSettings(model="none", port=ray_port, api_key=API_KEY,
                                  log_level="warning")
    report: dict[str, Any] = {"rules": []}
    try:
        for proxy in ("python", "haproxy"):
            if proxy == "python" and "a" in skip:
                continue
            running = start_ray(rules_server, _rules_cluster(1, num_cpus=2, serve_proxy=proxy))
            try:
                _check_same(baseline_url, running.url, rules_items(300, seed=2))
                if "a" not in skip:
                    for replicas in (1, 2):
                        _redeploy(rules_server, _rules_cluster(replicas))
                        row = rules_throughput(baseline_port, ray_port, bodies, replicas,
                                               args.seconds, args.repeats)
                        report["rules"].append({"proxy": proxy, **row})
                if proxy == "haproxy":  # the recommended entry
                    _model_and_scaling_parts(report, args, skip, running.url, ray_port,
                                             baseline_port, bodies)
            finally:
                running.shutdown()
    finally:
        stop(baseline)
        shutil.rmtree(workdir, ignore_errors=True)
    return _print(report)


def _print(report: dict[str, Any]) -> int:
    summary: dict[str, Any] = {}
    if report.get("rules"):
        print(f"\n(a) one-item rules requests, wrk {CONNECTIONS} connections")
        print(f"{'proxy':<9}{'ingress replicas':<18}{'single process':>16}{'Ray Serve':>12}"
              f"{'ratio':>8}{'p50 single':>12}{'p50 Ray':>10}")
        for row in report["rules"]:
            print(f"{row['proxy']:<9}{row['replicas']:<18}"
                  f"{row['baseline_items_per_s']:>14.0f}/s{row['ray_items_per_s']:>10.0f}/s"
                  f"{row['ratio']:>8.3f}{row['baseline_p50_ms']:>10.2f}ms"
                  f"{row['ray_p50_ms']:>8.2f}ms")
            name = f"rules_{row['proxy']}_{row['replicas']}_ingress"
            summary[f"{name}_items_per_s"] = round(row["ray_items_per_s"], 1)
            summary[f"{name}_ratio"] = round(row["ratio"], 3)
        summary["rules_single_process_items_per_s"] = round(
            statistics.median(r["baseline_items_per_s"] for r in report["rules"]), 1)
    if "grpo" in report:
        grpo = report["grpo"]
        print(f"\n(b) 8 prompts x 8 completions, one completion per request, 2 model replicas "
              f"(group window {grpo['group_window_ms']:g} ms)")
        print(f"{'routing':<13}{'side':<13}{'encodings':>10}{'tokens':>9}{'batches':>9}"
              f"{'seconds':>9}{'enc. eff.':>11}{'tok. eff.':>11}")
        for routing in ("prompt_hash", "balanced"):
            row = grpo[routing]
            for side in ("one_request", "per_sample"):
                work = row[side]
                line = (f"{routing:<13}{side:<13}{work['prompt_encodings']:>10}"
                        f"{work['tokens']:>9}{work['batches']:>9}{row[side + '_s']:>9.1f}")
                if side == "per_sample":
                    line += f"{row['encoding_efficiency']:>11.3f}{row['token_efficiency']:>11.3f}"
                print(line)
            summary[f"grpo_{routing}_encoding_efficiency"] = round(row["encoding_efficiency"], 3)
            summary[f"grpo_{routing}_token_efficiency"] = round(row["token_efficiency"], 3)
        print("efficiency = one request's count / per-sample count (1.0: no work repeated); "
              f"largest self-certainty difference "
              f"{max(grpo[r]['max_relative_difference'] for r in ('prompt_hash', 'balanced')):.1e}")
    if "autoscaling" in report:
        scaling = report["autoscaling"]
        print(f"\n(c) one-item rules requests while the ingress scales 1 -> 2 "
              f"(second replica running after {scaling['scaled_after_s']:g} s)")
        print(f"{'ends at s':<10}{'replicas':>9}{'phase':>11}{'items/s':>10}{'p50 ms':>9}"
              f"{'p99 ms':>9}")
        for w in scaling["windows"]:
            print(f"{w['t_s']:<10}{w['replicas']:>9}{w['phase']:>11}"
                  f"{w['requests'] / w['seconds']:>10.0f}{w['p50_ms']:>9.2f}{w['p99_ms']:>9.2f}")
        for name in ("ramp", "settled", "baseline"):
            part = scaling[name]
            label = "single process" if name == "baseline" else f"Ray, {name}"
            print(f"{label:<18} p50 {part['p50_ms']:.2f} ms  p99 {part['p99_ms']:.2f} ms  "
                  f"{part['items_per_s']:.0f} items/s")
            summary[f"{name}_p50_ms"] = round(part["p50_ms"], 2)
            summary[f"{name}_p99_ms"] = round(part["p99_ms"], 2)
    ratio = summary.get("rules_haproxy_2_ingress_ratio",
                        summary.get("rules_python_2_ingress_ratio", math.nan))
    print(json.dumps({"bench": "scale", **summary, "ratio_vs_baseline": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
