"""Benchmark: exact self-certainty on SmolLM2 (CPU or CUDA), ours vs a naive per-item scorer.

Shape (Shop-R1 GRPO): one ~1,500-token HTML-like prompt with a group of 8 completions of
~80 tokens (Shop-R1 JSON answers with a rationale), built from the real queries and
element names in ``data/shopping-steps``; then 8 unrelated prompts (no sharing).

* baseline (what Intuitor / open-r1 style code does): for each item, one forward over
  prompt + completion returning the full logits ``[1, L, V]``, a full float32
  ``log_softmax`` over them, then ``-mean(log p) - log V`` on the rows before the
  rationale tokens, averaged;
* ours: ``TransformersBackend.score_batch`` (prompt encoded once into a KV cache, the
  completions packed after it, lm_head only on the rows that predict rationale tokens,
  chunked float32 reductions).

Throughput = tokens scored (prompt + completion of every item) / seconds, median of
``--repeats`` runs after a warm-up, both methods alternating in one process (so load
from other processes on a shared machine hits both alike). Peak memory, each side in its
own fresh subprocess: on CPU, peak RSS during one run minus RSS after the model is loaded
and warmed up (the kernel's peak-RSS counter is reset through /proc/self/clear_refs); on
CUDA, ``torch.cuda.max_memory_allocated`` during one run minus the bytes of the weights
(parameters and buffers). Values of the two sides must agree within ``--rtol`` relative
(default 1e-4 in float32 on CPU; 2e-3 on CUDA, where the model runs in bfloat16 and the two
sides round differently), or the benchmark fails.

    python bench/bench_certainty.py [--prompt-tokens 1500 --group 8 --completion-tokens 80]
    python bench/bench_certainty.py --device cuda --model DIR   # a local model directory

Ends with one JSON line: {"bench": "certainty", ..., "ratio_vs_baseline": X}.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "shopping-steps"
sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------- inputs
def _records(data: Path = DATA) -> list[dict]:
    rows: list[dict] = []
    for path in sorted(Path(data).glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    if not rows:
        raise SystemExit(f"no shopping steps found under {data}")
    return rows


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")
    return out[:40] or "item"


def _page(rows: list[dict], rng: random.Random) -> str:
    """Simplified HTML of a results page: every interactable element has a name."""
    parts = [
        "<html><body><header><input name='search_input' type='text' placeholder='Search'/>"
        "<button name='search_button'>Search</button><a name='cart'>Cart</a></header><main>"
    ]
    for row in rows:
        label = row.get("text") or row.get("name") or "product"
        name = _slug(row.get("name") or label)
        price = f"{rng.randint(5, 400)}.{rng.randint(0, 99):02d}"
        parts.append(
            f"<div class='product'><a name='product.{name}'>{html.escape(label)}</a>"
            f"<span class='price'>${price}</span><span>{rng.randint(1, 5)} stars</span>"
            f"<button name='add_to_cart.{name}'>Add to cart</button></div>"
        )
    parts.append("</main></body></html>")
    return "".join(parts)


def _prompt_ids(tokenizer, rows: list[dict], n_tokens: int, rng: random.Random) -> list[int]:
    """Chat-templated prompt of exactly ``n_tokens`` ids (the HTML is cut to fit)."""
    task = rows[0].get("context_hint") or "Buy what you need."
    system = (
        "You simulate a human shopper. Given the page, answer with one JSON object: "
        '{"rationale": "...", "action": {"type": ..., "name": ..., "text": ...}}.'
    )

    def build(body: str) -> list[int]:
        msgs = [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Task: {task}\nPage:\n{body}"},
        ]
        text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    page = _page(rows, rng)
    overhead = len(build(""))
    body_ids = tokenizer(page, add_special_tokens=False)["input_ids"]
    while len(body_ids) < n_tokens:  # long sessions: more products
        page += _page(rng.sample(rows, min(len(rows), 40)), rng)
        body_ids = tokenizer(page, add_special_tokens=False)["input_ids"]
    ids = build(tokenizer.decode(body_ids[: max(0, n_tokens - overhead)]))
    return ids[:n_tokens] if len(ids) > n_tokens else ids


FILLERS = [
    "the price looks fair for what I need",
    "the reviews on this page seem reliable enough",
    "I would rather not scroll through every listing",
    "this matches the size and colour I had in mind",
    "I can still compare other options later",
]


def _completion(tokenizer, row: dict, n_tokens: int, rng: random.Random):
    """A Shop-R1 JSON answer of about ``n_tokens`` tokens and its rationale span."""
    kind = row.get("kind", "click")
    hint = (row.get("context_hint") or "find a good product").rstrip(".")
    if kind == "type_and_submit":
        action = {"type": kind, "name": row.get("name") or "search_input", "text": row["text"]}
        rationale = f"My goal is to {hint.lower()}, so I search for {row['text']}"
    elif kind == "click":
        action = {"type": kind, "name": row.get("name") or "product"}
        rationale = f"To {hint.lower()}, I open {row.get('name')}"
    else:
        action = {"type": "terminate"}
        rationale = "I have seen enough and nothing fits, so I leave"

    def render(r: str) -> str:
        return json.dumps({"rationale": r + ".", "action": action}, ensure_ascii=False)

    fill = FILLERS[:]
    rng.shuffle(fill)
    i = 0
    while len(tokenizer(render(rationale), add_special_tokens=False)["input_ids"]) < n_tokens:
        rationale += ", and " + fill[i % len(fill)]
        i += 1
    text = render(rationale)
    start = text.index(rationale)
    return text, (start, start + len(rationale) + 1)


def make_workloads(
    tokenizer,
    prompt_tokens: int,
    group: int,
    completion_tokens: int,
    seed: int,
    data: Path = DATA,
):
    """(shared group, unrelated prompts) as lists of CertaintyRequest."""
    from reward_server.certainty.types import CertaintyRequest

    rng = random.Random(seed)
    rows = _records(data)
    with_text = [r for r in rows if r.get("text") or r.get("name")]
    shared_rows = rng.sample(with_text, 120)
    prompt = tuple(_prompt_ids(tokenizer, shared_rows, prompt_tokens, rng))
    shared = []
    for row in rng.sample(with_text, group):
        text, span = _completion(tokenizer, row, completion_tokens, rng)
        shared.append(CertaintyRequest(text, span, prompt_ids=prompt))
    unrelated = []
    for _ in range(group):
        page_rows = rng.sample(with_text, 120)
        ids = tuple(_prompt_ids(tokenizer, page_rows, prompt_tokens, rng))
        text, span = _completion(tokenizer, rng.choice(with_text), completion_tokens, rng)
        unrelated.append(CertaintyRequest(text, span, prompt_ids=ids))
    return shared, unrelated


# ---------------------------------------------------------------------------- methods
def baseline_scores(backend, requests) -> list[float]:
    """Per-item forward, full logits, full float32 log-softmax (the naive scorer)."""
    import torch

    out = []
    with torch.inference_mode():
        for req in requests:
            enc = backend.encode(req)
            ids = list(enc.prompt_ids) + enc.completion_ids
            input_ids = torch.tensor([ids], device=backend.device)
            logits = backend.model(input_ids=input_ids).logits  # [1, L, V]
            logp = torch.log_softmax(logits.float() / req.temperature, dim=-1)  # [1, L, V]
            rows = [len(enc.prompt_ids) + p - 1 for p in enc.positions]
            kl = -logp[0, rows].mean(dim=-1) - math.log(logp.shape[-1])
            out.append(float(kl.mean()))
            del logits, logp
    return out


def ours_scores(backend, requests) -> list[float]:
    return [r.value for r in backend.score_batch(requests)]


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _hwm_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def _weights_bytes(model) -> int:
    """Bytes of the model's parameters and buffers (tied weights counted once)."""
    import itertools

    seen: set[int] = set()
    total = 0
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def _sync(backend) -> None:
    """Wait for queued GPU work, so a clock read after it counts all of it."""
    if backend.device.type == "cuda":
        import torch

        torch.cuda.synchronize(backend.device)


def _load_side(args):
    import torch

    from reward_server.certainty.backends import TransformersBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = TransformersBackend.from_pretrained(
        args.model, device=args.device, cache_dir=args.cache_dir
    )
    backend.warmup()
    shared, unrelated = make_workloads(
        backend.tokenizer,
        args.prompt_tokens,
        args.group,
        args.completion_tokens,
        args.seed,
        Path(args.data),
    )
    reqs = shared if args.workload == "shared" else unrelated
    for method in (baseline_scores, ours_scores):
        method(backend, [_short(reqs[0])])  # warm-up on a short item
    return backend, reqs


def run_timing(args) -> dict:
    """Both methods in one process, alternating, so load from other processes on this
    shared machine hits both sides alike; median of ``repeats`` runs each."""
    import torch

    backend, reqs = _load_side(args)
    times: dict[str, list[float]] = {"baseline": [], "ours": []}
    values: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, method in (("baseline", baseline_scores), ("ours", ours_scores)):
            _sync(backend)
            t0 = time.perf_counter()
            values[name] = method(backend, reqs)
            _sync(backend)
            times[name].append(time.perf_counter() - t0)
    return {
        "tokens": sum(backend.encode(r).total_tokens for r in reqs),
        "items": len(reqs),
        "times": times,
        "seconds": {k: statistics.median(v) for k, v in times.items()},
        "values": values,
        "threads": torch.get_num_threads(),
    }


def run_memory(args) -> dict:
    """One method, one run, in this fresh process: peak RSS over RSS after load+warm-up
    (CPU), or peak CUDA allocation over the weights' bytes (GPU)."""
    import gc

    backend, reqs = _load_side(args)
    method = baseline_scores if args.side == "baseline" else ours_scores
    gc.collect()
    if backend.device.type == "cuda":
        return _run_cuda_memory(args, backend, method, reqs)
    rss0 = _rss_kb()
    with open("/proc/self/clear_refs", "w") as fh:  # reset the peak-RSS counter (VmHWM)
        fh.write("5")
    values = method(backend, reqs)
    return {"side": args.side, "peak_mb": (_hwm_kb() - rss0) / 1024, "values": values}


def _run_cuda_memory(args, backend, method, reqs) -> dict:
    import torch

    _sync(backend)
    weights = _weights_bytes(backend.model)
    # What stays allocated after load + warm-up beyond the weights (should be ~0).
    resident = torch.cuda.memory_allocated(backend.device) - weights
    torch.cuda.reset_peak_memory_stats(backend.device)
    values = method(backend, reqs)
    _sync(backend)
    peak = torch.cuda.max_memory_allocated(backend.device) - weights
    return {
        "side": args.side,
        "peak_mb": peak / 2**20,
        "resident_mb": resident / 2**20,
        "weights_mb": weights / 2**20,
        "values": values,
    }


def _short(req):
    from dataclasses import replace

    return replace(req, prompt_ids=req.prompt_ids[:64])


# ---------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompt-tokens", type=int, default=1500)
    ap.add_argument("--group", type=int, default=8, help="completions per prompt")
    ap.add_argument("--completion-tokens", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--model",
        default="embedded",
        help="'embedded' (the de-quantised SmolLM2) or a local model directory",
    )
    ap.add_argument(
        "--data", default=str(DATA), help="folder of shopping-step JSONL files (the inputs)"
    )
    ap.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="largest relative difference of the two sides' values "
        "(default: 1e-4 on CPU, float32; 2e-3 on CUDA, bfloat16)",
    )
    ap.add_argument(
        "--cache-dir",
        default=str(Path.home() / ".cache" / "shop-r1-reward"),
        help="where the de-quantised embedded SmolLM2 is cached",
    )
    ap.add_argument("--skip-unrelated", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--side", choices=["baseline", "ours", "timing"], help=argparse.SUPPRESS)
    ap.add_argument("--workload", choices=["shared", "unrelated"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.side:  # child: one side, one workload, print one JSON line
        print(json.dumps(run_timing(args) if args.side == "timing" else run_memory(args)))
        return 0

    from reward_server.certainty.model_loading import resolve_model_dir

    # Checks a model directory; builds the embedded cache once, outside the measured children.
    _, model_name = resolve_model_dir(args.model, args.cache_dir)
    cuda = args.device.startswith("cuda")
    rtol = args.rtol if args.rtol is not None else (2e-3 if cuda else 1e-4)
    workloads = ["shared"] + ([] if args.skip_unrelated else ["unrelated"])
    base_args = [
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--group",
        str(args.group),
        "--completion-tokens",
        str(args.completion_tokens),
        "--repeats",
        str(args.repeats),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--cache-dir",
        args.cache_dir,
        "--model",
        args.model,
        "--data",
        args.data,
        "--threads",
        str(args.threads),
    ]
    results: dict[str, dict[str, dict]] = {}
    for wl in workloads:
        for side in ("timing", "baseline", "ours"):
            cmd = [sys.executable, __file__, *base_args, "--side", side, "--workload", wl]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"{side}/{wl} failed")
            results.setdefault(wl, {})[side] = json.loads(proc.stdout.strip().splitlines()[-1])

    figures: dict[str, float | int | str | bool] = {
        "model": model_name,
        "device": args.device,
        "prompt_tokens": args.prompt_tokens,
        "group": args.group,
        "completion_tokens": args.completion_tokens,
        "repeats": args.repeats,
        "memory": (
            "torch.cuda.max_memory_allocated minus the weights, fresh process per side"
            if cuda
            else "peak RSS minus RSS after load, fresh process per side"
        ),
        "rtol": rtol,
    }
    ok = True
    prec = 4 if cuda else 2  # GPU runs take milliseconds
    print(
        f"{'workload':<10} {'method':<9} {'median s':>9} {'tokens/s':>9} "
        f"{'peak MB':>8} {'max rel diff':>13}"
    )
    for wl, sides in results.items():
        timing = sides["timing"]
        secs, tokens = timing["seconds"], timing["tokens"]
        peak = {k: sides[k]["peak_mb"] for k in ("baseline", "ours")}
        pairs = [
            *zip(timing["values"]["baseline"], timing["values"]["ours"], strict=True),
            *zip(sides["baseline"]["values"], sides["ours"]["values"], strict=True),
        ]
        diff = max(abs(x - y) / max(abs(x), 1e-12) for x, y in pairs)
        ok = ok and diff <= rtol
        for side in ("baseline", "ours"):
            print(
                f"{wl:<10} {side:<9} {secs[side]:>9.{prec}f} {tokens / secs[side]:>9.0f} "
                f"{peak[side]:>8.0f} {diff:>13.1e}"
            )
        speed = secs["baseline"] / secs["ours"]
        mem = peak["ours"] / max(peak["baseline"], 1e-9)
        print(
            f"{wl:<10} ratio: throughput x{speed:.2f}, peak memory x{mem:.3f} of baseline "
            f"({timing['items']} items, {tokens} tokens, {timing['threads']} threads)"
        )
        figures[f"{wl}_baseline_tokens_per_s"] = round(tokens / secs["baseline"], 1)
        figures[f"{wl}_ours_tokens_per_s"] = round(tokens / secs["ours"], 1)
        figures[f"{wl}_baseline_peak_mb"] = round(peak["baseline"], 1)
        figures[f"{wl}_ours_peak_mb"] = round(peak["ours"], 1)
        if cuda:  # allocated beyond the weights before the run (should be ~0)
            for side in ("baseline", "ours"):
                figures[f"{wl}_{side}_resident_mb"] = round(sides[side]["resident_mb"], 1)
        figures[f"{wl}_throughput_ratio"] = round(speed, 3)
        figures[f"{wl}_memory_ratio"] = round(mem, 4)
        figures[f"{wl}_max_rel_diff"] = diff
    print(f"peak MB: {figures['memory']}")
    figures["values_equal"] = ok
    figures["ratio_vs_baseline"] = figures["shared_throughput_ratio"]
    if not ok:
        print(f"FAIL: values differ by more than {rtol:g} relative", file=sys.stderr)
    print(json.dumps({"bench": "certainty", **figures}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
