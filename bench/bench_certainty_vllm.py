"""Benchmark: exact self-certainty with the vLLM backend vs the transformers backend.

Same shapes and inputs as ``bench_certainty.py`` (its ``make_workloads``): one ~1,500-token
HTML-like prompt with a group of 8 completions of ~80 tokens (GRPO), then 8 unrelated
prompts (no sharing possible).

* baseline: ``TransformersBackend.score_batch`` (the project's transformers backend:
  prompt encoded once into a KV cache, completions packed after it, chunked reductions);
* vllm: ``VllmBackend.score_batch`` (vLLM pooling runner, per-token final hidden states,
  our lm_head + the same chunked reductions; the group's prompt is computed once and read
  from vLLM's prefix cache by the other completions);
* vllm-noshare: the same with prompt sharing off (each item recomputes its prompt), to
  show what the prefix cache contributes.

vLLM needs its own virtual environment (``scripts/install-vllm-cpu``, default
``.venv-vllm``): it runs as a child process with that python, driven over stdin/stdout,
while the transformers side runs here; the sides alternate, repeat by repeat, so load
from other processes on a shared machine hits both alike. vLLM's prefix cache is reset
before every timed run (nothing carries over between repeats). Throughput = tokens
(prompt + completion of every item) / median seconds of ``--repeats`` runs after a
warm-up; both sides get ``--threads`` CPU threads (vllm-cpu's reserved scheduler core
is set to none, ``VLLM_CPU_NUM_OF_RESERVED_CPU=0``, unless the variable is set). Values
must agree within 1e-4 relative, or the benchmark fails.

    scripts/install-vllm-cpu && .venv/bin/python bench/bench_certainty_vllm.py

Ends with one JSON line: {"bench": "certainty_vllm", ..., "ratio_vs_baseline": X} where X
is the vLLM / transformers throughput ratio on the shared-prompt workload.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TAG = "@@bench "
TOL = 1e-4


def _bench_certainty():
    path = REPO / "bench" / "bench_certainty.py"
    spec = importlib.util.spec_from_file_location("bench_certainty", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------- vLLM child
def serve_vllm(args) -> int:
    """Child (vLLM venv): load the backend, then answer one JSON command per stdin line."""
    from reward_server.certainty.vllm_backend import VllmBackend

    t0 = time.perf_counter()
    backend = VllmBackend.from_pretrained("embedded", device="cpu", cache_dir=args.cache_dir)
    backend.warmup()
    # Written by the parent process of this benchmark: the requests as pickled dataclasses.
    workloads = pickle.loads(Path(args.workloads).read_bytes())

    def reply(obj: dict) -> None:
        sys.stdout.write(TAG + json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True, "load_seconds": time.perf_counter() - t0})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        reqs = workloads[cmd["workload"]]
        if cmd.get("short"):
            reqs = reqs[:1]
        backend.share_prompts = not cmd.get("noshare", False)
        backend.llm.reset_prefix_cache()
        t = time.perf_counter()
        results = backend.score_batch(reqs)
        secs = time.perf_counter() - t
        reply({
            "seconds": secs,
            "values": [r.value for r in results],
            "approximate": any(r.approximate for r in results),
            "cached_tokens": backend.last_cached_tokens,
        })
    backend.close()
    return 0


class VllmChild:
    def __init__(self, python: str, workloads: Path, args) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
               "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
        # vllm-cpu reserves one core for its scheduler process and binds the model worker
        # to the rest: on a machine with two cores that halves its compute threads. Reserve none,
        # so both sides get the same --threads cores (override by setting the variable).
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        self.log = open(args.vllm_log, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [python, __file__, "--serve-vllm", "--workloads", str(workloads),
             "--cache-dir", args.cache_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            cwd=REPO, env=env,
        )
        self.hello = self._read()

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])
        raise SystemExit(f"the vLLM child exited (rc {self.proc.wait()}); see its log")

    def run(self, **cmd) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _bench_certainty().add_workload_args(ap)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for each side")
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "shop-r1-reward"))
    ap.add_argument(
        "--vllm-python",
        default=str(Path(os.environ.get("SHOP_R1_VLLM_VENV") or REPO / ".venv-vllm")
                    / "bin" / "python"),
        help="python of the vLLM virtual environment (scripts/install-vllm-cpu)",
    )
    ap.add_argument("--vllm-log", default="/tmp/bench_certainty_vllm.log")
    ap.add_argument("--skip-unrelated", action="store_true")
    ap.add_argument("--serve-vllm", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workloads", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.serve_vllm:
        return serve_vllm(args)
    if not Path(args.vllm_python).exists():
        raise SystemExit(f"no vLLM python at {args.vllm_python}: run scripts/install-vllm-cpu")

    import tempfile

    import torch

    from reward_server.certainty.model_loading import prepare_embedded
    from reward_server.certainty.transformers_backend import TransformersBackend

    torch.set_num_threads(args.threads)
    prepare_embedded(args.cache_dir)
    tb = TransformersBackend.from_pretrained("embedded", device="cpu", cache_dir=args.cache_dir)
    tb.warmup()
    shared, unrelated = _bench_certainty().make_workloads(
        tb.tokenizer, args.prompt_tokens, args.group, args.completion_tokens, args.seed
    )
    workloads = {"shared": shared} | ({} if args.skip_unrelated else {"unrelated": unrelated})
    tmp = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    wl_file = tmp / "workloads.pickle"
    wl_file.write_bytes(pickle.dumps(workloads))
    child = VllmChild(args.vllm_python, wl_file, args)
    try:
        for name, reqs in workloads.items():  # warm-up on one item of each workload
            tb.score_batch(reqs[:1])
            child.run(workload=name, short=True)
        rows = {}
        for name, reqs in workloads.items():
            tokens = sum(tb.encode(r).total_tokens for r in reqs)
            times: dict[str, list[float]] = {"transformers": [], "vllm": [], "vllm-noshare": []}
            values: dict[str, list[float]] = {}
            cached = 0
            for _ in range(args.repeats):
                t = time.perf_counter()
                values["transformers"] = [r.value for r in tb.score_batch(reqs)]
                times["transformers"].append(time.perf_counter() - t)
                out = child.run(workload=name)
                times["vllm"].append(out["seconds"])
                values["vllm"], cached = out["values"], out["cached_tokens"]
                assert not out["approximate"]
                if name == "shared":
                    out = child.run(workload=name, noshare=True)
                    times["vllm-noshare"].append(out["seconds"])
                    values["vllm-noshare"] = out["values"]
                print(f"[{name}] " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()
                                               if v), file=sys.stderr, flush=True)
            secs = {k: statistics.median(v) for k, v in times.items() if v}
            base = values["transformers"]
            diff = max(
                abs(x - y) / max(abs(y), 1e-12)
                for k, vals in values.items() if k != "transformers"
                for x, y in zip(vals, base, strict=True)
            )
            rows[name] = {"tokens": tokens, "items": len(reqs), "secs": secs, "diff": diff,
                          "cached": cached}
    finally:
        child.close()

    figures: dict[str, object] = {
        "model": "SmolLM2-135M-Instruct",
        "device": "cpu",
        "dtype": "float32",
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "group": args.group,
        "completion_tokens": args.completion_tokens,
        "repeats": args.repeats,
        "vllm_engine_start_seconds": round(child.hello["load_seconds"], 1),
    }
    ok = True
    print(f"{'workload':<10} {'method':<13} {'median s':>9} {'tokens/s':>9} {'max rel diff':>13}")
    for name, row in rows.items():
        ok = ok and row["diff"] <= TOL
        for method, s in row["secs"].items():
            print(f"{name:<10} {method:<13} {s:>9.2f} {row['tokens'] / s:>9.0f} "
                  f"{row['diff']:>13.1e}")
            key = method.replace("-", "_")
            figures[f"{name}_{key}_tokens_per_s"] = round(row["tokens"] / s, 1)
        ratio = row["secs"]["transformers"] / row["secs"]["vllm"]
        print(f"{name:<10} ratio: vLLM throughput x{ratio:.2f} of the transformers backend "
              f"({row['items']} items, {row['tokens']} tokens; prompt tokens read from vLLM's "
              f"prefix cache: {row['cached']})")
        figures[f"{name}_throughput_ratio"] = round(ratio, 3)
        figures[f"{name}_vllm_cached_tokens"] = row["cached"]
        figures[f"{name}_max_rel_diff"] = row["diff"]
    figures["values_equal"] = ok
    figures["ratio_vs_baseline"] = figures["shared_throughput_ratio"]
    if not ok:
        print(f"FAIL: values differ by more than {TOL} relative", file=sys.stderr)
    print(json.dumps({"bench": "certainty_vllm", **figures}))
    return 0 if ok else 1


if __name__ == "__main__":  # vLLM spawns its engine processes: the guard is required
    rc = main()
    sys.stdout.flush()
    if "--serve-vllm" in sys.argv:
        os._exit(rc)  # vllm-cpu may abort in interpreter teardown
    raise SystemExit(rc)
