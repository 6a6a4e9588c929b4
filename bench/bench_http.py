"""HTTP throughput of the service against the framework's own ceiling, same run.

(a) one-item requests at 64 concurrent connections and (b) 256-item batches, each against
``bench/http_ceiling.py`` (a bare FastAPI endpoint that parses the same body and returns
constant rewards), both under uvicorn with identical settings, driven by ``wrk`` (C, one
thread, so the load generator costs little of the 2 cores). Rule-only scoring; the
service's rewards are checked against in-process scoring first.
(c) model self-certainty: 64 concurrent one-item requests against one 64-item request to
the same server (the micro-batcher should coalesce the former), embedded SmolLM2.

    python bench/bench_http.py [--seconds 8] [--repeats 3] [--no-model]

Ends with one JSON line: {"bench": "http", ..., "ratio_vs_baseline": min of (a), (b)}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "shopping-steps"
sys.path.insert(0, str(REPO))

from reward_server.config import RewardConfig  # noqa: E402
from reward_server.rewards import parse_ground_truth, score_completion  # noqa: E402

RATIONALES = [
    "I am looking for {q}, so I type it into the search box to see what the store has.",
    "The results look relevant; I want to narrow them down before I compare prices.",
    "This item matches what I need and the reviews look fine, so I open it.",
    "Nothing here fits my budget and I have seen enough, so I leave the site.",
]


def load_steps(limit: int = 2000) -> list[dict]:
    steps = []
    for path in sorted(DATA.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            steps.extend(json.loads(line) for line in handle if line.strip())
    return steps[:limit] if limit else steps


def make_item(step: dict, rng: random.Random, index: int) -> dict:
    kind = step["kind"]
    truth = {"type": kind}
    if kind != "terminate":
        truth["name"] = step["name"] or "search_input"
    if kind == "type_and_submit":
        truth["text"] = step["text"] or "shoes"
    predicted = dict(truth)
    if kind == "type_and_submit" and rng.random() < 0.5:
        words = predicted["text"].split()
        predicted["text"] = " ".join(words[:-1] or words)
    if rng.random() < 0.1:
        predicted = {"type": "terminate"}
    rationale = rng.choice(RATIONALES).format(q=step.get("text") or "something")
    completion = json.dumps({"rationale": rationale, "action": predicted})
    return {"id": index, "completion": completion, "ground_truth": truth}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], port: int, ready_path: str, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).status_code in (
                200, 405
            ):
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server {args} did not become ready")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def run_wrk(port: int, bodies_file: Path, connections: int, seconds: float) -> dict:
    script = REPO / "bench" / "wrk_post.lua"
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s",
         str(script), f"http://127.0.0.1:{port}", "--", str(bodies_file)],
        capture_output=True, text=True, check=True,
    )
    line = [x for x in result.stdout.splitlines() if x.startswith("{")][-1]
    figures = json.loads(line)
    if figures["errors"] or figures["non2xx"]:
        raise RuntimeError(f"wrk saw errors: {figures}")
    return figures


def check_rewards(port: int, body: dict) -> None:
    """The service's answer equals in-process scoring of the same items."""
    config = RewardConfig()
    response = httpx.post(f"http://127.0.0.1:{port}/v1/rewards", json=body, timeout=60)
    response.raise_for_status()
    results = response.json()["results"]
    assert len(results) == len(body["items"])
    for item, result in zip(body["items"], results, strict=True):
        expected = score_completion(item["completion"], parse_ground_truth(item["ground_truth"]),
                                    config)
        assert result["id"] == item["id"] and result["reward"] == expected.reward, (item, result)


def shape_figures(name: str, samples: list[dict], items_per_request: int) -> dict:
    rates = [s["requests"] / s["seconds"] * items_per_request for s in samples]
    best = samples[rates.index(statistics.median(rates))] if len(rates) % 2 else samples[0]
    return {
        "items_per_s": statistics.median(rates),
        "p50_ms": statistics.median(s["p50_ms"] for s in samples),
        "p99_ms": statistics.median(s["p99_ms"] for s in samples),
        "name": name,
        "_sample": best,
    }


async def _concurrent_vs_single(url: str, items: list[dict], repeats: int) -> tuple[float, float]:
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=128)) as client:
        async def post(batch: list[dict]) -> None:
            response = await client.post(url, json={"items": batch,
                                                    "self_certainty_source": "model"})
            response.raise_for_status()
            values = [r["components"]["self_certainty"] for r in response.json()["results"]]
            assert all(v is not None for v in values), response.text[:500]

        await post(items[:4])  # warm-up
        concurrent, single = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            await asyncio.gather(*(post([item]) for item in items))
            concurrent.append(len(items) / (time.perf_counter() - started))
            started = time.perf_counter()
            await post(items)
            single.append(len(items) / (time.perf_counter() - started))
    return statistics.median(concurrent), statistics.median(single)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk duration per sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--no-model", action="store_true", help="skip (c), the model part")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_http needs wrk (apt-get install wrk)")

    rng = random.Random(7)
    steps = load_steps()
    items = [make_item(step, rng, i) for i, step in enumerate(steps)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    one_item = workdir / "one.jsonl"
    batches = workdir / "batch.jsonl"
    one_item.write_text("\n".join(json.dumps({"items": [item]}) for item in items[:1000]))
    batch_bodies = [
        {"items": rng.sample(items, args.batch)} for _ in range(16)
    ]
    batches.write_text("\n".join(json.dumps(body) for body in batch_bodies))

    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    ours_port, ceiling_port = free_port(), free_port()
    uvicorn_flags = ["--log-level", "warning", "--no-access-log"]
    ours = start([sys.executable, "-m", "reward_server.cli", "serve", "--model", "none",
                  "--port", str(ours_port), "--log-level", "warning"], ours_port, "/readyz", env)
    ceiling = start([sys.executable, "-m", "uvicorn", "bench.http_ceiling:app", "--port",
                     str(ceiling_port), *uvicorn_flags], ceiling_port, "/v1/rewards", env)
    try:
        check_rewards(ours_port, batch_bodies[0])
        shapes = {"one_item_x64": (one_item, 1), f"batch_{args.batch}": (batches, args.batch)}
        figures: dict[str, dict] = {}
        for shape, (bodies, per_request) in shapes.items():
            for port in (ours_port, ceiling_port):  # warm-up
                run_wrk(port, bodies, args.connections, 2)
            ours_samples, ceiling_samples = [], []
            for _ in range(args.repeats):
                ours_samples.append(run_wrk(ours_port, bodies, args.connections, args.seconds))
                ceiling_samples.append(
                    run_wrk(ceiling_port, bodies, args.connections, args.seconds)
                )
            figures[shape] = {
                "service": shape_figures("service", ours_samples, per_request),
                "ceiling": shape_figures("ceiling", ceiling_samples, per_request),
            }
    finally:
        stop(ours)
        stop(ceiling)

    print(f"{'shape':<16}{'side':<10}{'items/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    summary: dict[str, float] = {}
    for shape, sides in figures.items():
        for side in ("service", "ceiling"):
            f = sides[side]
            print(f"{shape:<16}{side:<10}{f['items_per_s']:>12.0f}{f['p50_ms']:>10.2f}"
                  f"{f['p99_ms']:>10.2f}")
        ratio = sides["service"]["items_per_s"] / sides["ceiling"]["items_per_s"]
        print(f"{shape:<16}{'ratio':<10}{ratio:>12.3f}   (target >= 0.70 of the ceiling)")
        summary[f"{shape}_items_per_s"] = round(sides["service"]["items_per_s"], 1)
        summary[f"{shape}_ceiling_items_per_s"] = round(sides["ceiling"]["items_per_s"], 1)
        summary[f"{shape}_p50_ms"] = round(sides["service"]["p50_ms"], 3)
        summary[f"{shape}_p99_ms"] = round(sides["service"]["p99_ms"], 3)
        summary[f"{shape}_ratio"] = round(ratio, 3)

    if not args.no_model:
        model_port = free_port()
        server = start([sys.executable, "-m", "reward_server.cli", "serve", "--model",
                        "embedded", "--port", str(model_port), "--log-level", "warning"],
                       model_port, "/readyz", env)
        try:
            prompt = "<html><body>" + " ".join(s["name"] for s in steps[:60]) + "</body></html>"
            model_items = [{**item, "prompt": prompt} for item in items[:64]]
            concurrent, single = asyncio.run(_concurrent_vs_single(
                f"http://127.0.0.1:{model_port}/v1/rewards", model_items, args.repeats))
        finally:
            stop(server)
        ratio = concurrent / single
        print(f"model: 64 concurrent one-item requests {concurrent:.1f} items/s; one 64-item "
              f"request {single:.1f} items/s; ratio {ratio:.3f} (target >= 0.70)")
        summary.update(model_concurrent_items_per_s=round(concurrent, 2),
                       model_single_request_items_per_s=round(single, 2),
                       model_microbatch_ratio=round(ratio, 3))

    shutil.rmtree(workdir, ignore_errors=True)
    ratio_vs_baseline = min(v for k, v in summary.items() if k.endswith("_ratio")
                            and not k.startswith("model"))
    print(json.dumps({"bench": "http", **summary, "ratio_vs_baseline": ratio_vs_baseline}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
