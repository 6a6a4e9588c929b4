"""Benchmark: exact self-certainty, ours (packed forwards) vs a naive per-item scorer.

Two modes, both ending with one JSON line ``{"bench": ..., "ratio_vs_baseline": X}``.

**One model** (default; CPU or CUDA): SmolLM2 (``--model embedded``, or a local model
directory), a Shop-R1 GRPO shape: one ~1,500-token HTML-like prompt with a group of 8
completions of ~80 tokens, built from the real queries and element names in
``data/shopping-steps``; then 8 unrelated prompts (no sharing). Throughput = tokens scored
(prompt + completion of every item) / seconds, median of ``--repeats`` runs after a
warm-up, both methods alternating in one process (so load from other processes on a
shared machine hits both alike). Peak memory, each side in its own fresh subprocess: on
CPU, peak RSS during one run minus RSS after the model is loaded and warmed up (the
kernel's peak-RSS counter is reset through /proc/self/clear_refs); on CUDA,
``torch.cuda.max_memory_allocated`` during one run minus the bytes of the weights.

**Model sizes** (``--shapes``): random-weight models of published architectures
(``bench/model_shapes.py``: SmolLM2-135M, Qwen2.5-0.5B, -1.5B, -3B; no
download; token ids from the SmolLM2 tokenizer, which every vocabulary here contains),
in one process, each on the ``--workloads`` (``shared:G`` one prompt with G completions,
``unrelated:N`` N prompts with one completion each, ``training:PxG`` P prompts with G
completions each, the Shop-R1 training step). Reports tokens/s and, on CUDA, MFU:

    MFU = 2 * N * forward tokens / seconds / peak

with N the parameters of the decoder layers (the input embedding is a lookup and the
output layer runs on rationale rows only; attention's own FLOPs are not counted), forward
tokens what each side computes (the baseline every item's prompt and completion; ours
each prompt once per pack and each completion up to its last rationale token), and peak
both the chip's dense bf16 peak from ``PEAK_BF16_TFLOPS`` (by device name) and a large
bf16 matmul measured on the chip in the same run. ``--baseline-items`` scores the
baseline on an evenly spread subset of a workload (its per-token cost does not depend on
the batch) when the whole is too slow. ``ratio_vs_baseline`` is the smallest throughput
ratio over all (shape, workload) rows.

Methods, in both modes:

* baseline (what Intuitor / open-r1 style code does): for each item, one forward over
  prompt + completion returning the full logits ``[1, L, V]``, a full float32
  ``log_softmax`` over them, then ``-mean(log p) - log V`` on the rows before the
  rationale tokens, averaged;
* ours: ``TransformersBackend.score_batch`` (packed forwards: each prompt once, its
  completions after it, unrelated prompts side by side, a block-structured attention;
  output layer only on the rows that predict rationale tokens; chunked float32
  reductions).

Values of the two sides must agree within ``--rtol`` relative (default 1e-4 in float32 on
CPU; 2e-3 on CUDA, where the model runs in bfloat16 and the two sides round
differently), or the benchmark fails.

    python bench/bench_certainty.py [--prompt-tokens 1500 --group 8 --completion-tokens 80]
    python bench/bench_certainty.py --device cuda --model DIR   # a local model directory
    python bench/bench_certainty.py --device cuda --shapes SmolLM2-135M,Qwen2.5-1.5B \
        --workloads training:64x8,unrelated:8 --tokenizer DIR
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
    # The span is the rationale as the JSON text spells it (a quote in a product name is
    # escaped there), as the service parses it.
    spelled = json.dumps(rationale + ".", ensure_ascii=False)[1:-1]
    start = text.index(spelled)
    return text, (start, start + len(spelled))


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

    from reward_server.certainty.transformers_backend import TransformersBackend

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


# ---------------------------------------------------------------------------- model sizes
# Dense (no sparsity) bfloat16 tensor-core peaks from the vendors' data sheets, in TFLOP/s,
# matched against torch.cuda.get_device_name() in this order (first match wins).
PEAK_BF16_TFLOPS = [
    ("GH200", 989.4),
    ("H200 NVL", 835.5),
    ("H200", 989.4),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H100", 989.4),  # SXM
    ("A100", 312.0),
]


def table_peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in device_name:
            return tflops
    return None


def measured_matmul_tflops(device, n: int = 8192, repeats: int = 20) -> float:
    """Best TFLOP/s of an ``n x n x n`` bfloat16 matmul on ``device`` (after a warm-up)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    return 2 * n**3 / best / 1e12


def parse_workload(spec: str) -> tuple[str, int, int]:
    """``shared:G`` -> (shared, 1, G); ``unrelated:N`` -> (unrelated, N, 1);
    ``training:PxG`` -> (training, P, G)."""
    name, _, size = spec.partition(":")
    if name == "shared":
        return name, 1, int(size or 8)
    if name == "unrelated":
        return name, int(size or 8), 1
    if name == "training":
        prompts, _, group = (size or "64x8").partition("x")
        return name, int(prompts), int(group or 8)
    raise SystemExit(f"unknown workload {spec!r} (shared:G, unrelated:N, training:PxG)")


def make_groups(tokenizer, prompts: int, group: int, args, data: Path = DATA) -> list:
    """``prompts`` different prompts of ``--prompt-tokens`` ids, each with ``group``
    completions of about ``--completion-tokens`` tokens."""
    from reward_server.certainty.types import CertaintyRequest

    rng = random.Random(args.seed)
    rows = [r for r in _records(data) if r.get("text") or r.get("name")]
    out = []
    for _ in range(prompts):
        ids = tuple(_prompt_ids(tokenizer, rng.sample(rows, 120), args.prompt_tokens, rng))
        for row in rng.sample(rows, group):
            text, span = _completion(tokenizer, row, args.completion_tokens, rng)
            out.append(CertaintyRequest(text, span, prompt_ids=ids))
    return out


def _spread(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when k is None or >= n)."""
    if not k or k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def sweep_one(backend, reqs, body_params: int, args, peaks: dict) -> dict:
    """Both methods on one workload: median seconds, tokens/s, MFU, peak memory, values."""
    import torch

    cuda = backend.device.type == "cuda"
    base_idx = _spread(len(reqs), args.baseline_items)
    base_reqs = [reqs[i] for i in base_idx]
    encoded = [backend.encode(r) for r in reqs]
    tokens = sum(e.total_tokens for e in encoded)
    base_tokens = sum(encoded[i].total_tokens for i in base_idx)
    forward: dict[str, int] = {"baseline": base_tokens}

    def ours(_backend, batch):  # encoding included, as in the baseline
        results, stats = backend.score_encoded([backend.encode(r) for r in batch])
        forward["ours"] = stats.tokens
        return [r.value for r in results]

    sides = {"baseline": (baseline_scores, base_reqs), "ours": (ours, reqs)}
    for method, batch in sides.values():  # warm-up (compiles, allocator) on a few items
        method(backend, batch[: min(2, len(batch))])
    times: dict[str, list[float]] = {"baseline": [], "ours": []}
    values: dict[str, list[float]] = {}
    peak_mb: dict[str, float] = {}
    for r in range(args.repeats):
        for name, (method, batch) in sides.items():
            last = r == args.repeats - 1
            if cuda and last:
                torch.cuda.synchronize(backend.device)
                before = torch.cuda.memory_allocated(backend.device)
                torch.cuda.reset_peak_memory_stats(backend.device)
            _sync(backend)
            t0 = time.perf_counter()
            values[name] = method(backend, batch)
            _sync(backend)
            times[name].append(time.perf_counter() - t0)
            if cuda and last:
                peak = torch.cuda.max_memory_allocated(backend.device) - before
                peak_mb[name] = peak / 2**20
    secs = {k: statistics.median(v) for k, v in times.items()}
    ours_on_base = [values["ours"][i] for i in base_idx]
    diff = max(
        abs(x - y) / max(abs(x), 1e-12)
        for x, y in zip(values["baseline"], ours_on_base, strict=True)
    )
    row = {
        "items": len(reqs),
        "baseline_items": len(base_idx),
        "tokens": tokens,
        "seconds": secs,
        "tokens_per_s": {"baseline": base_tokens / secs["baseline"], "ours": tokens / secs["ours"]},
        "forward_tokens": forward,
        "peak_mb": peak_mb,
        "max_rel_diff": diff,
    }
    row["ratio"] = row["tokens_per_s"]["ours"] / row["tokens_per_s"]["baseline"]
    for peak_name, tflops in peaks.items():
        if tflops:
            row[f"mfu_{peak_name}"] = {
                side: 2 * body_params * forward[side] / secs[side] / (tflops * 1e12)
                for side in ("baseline", "ours")
            }
    return row


def run_sweep(args) -> int:
    """``--shapes``: every shape on every workload, in this process."""
    import gc

    import torch
    from transformers import AutoTokenizer

    from bench.model_shapes import SHAPES, parameter_counts, random_model
    from reward_server.certainty.transformers_backend import TransformersBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.shapes.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; known: {sorted(SHAPES)}")
    tokenizer = AutoTokenizer.from_pretrained(_tokenizer_dir(args))
    cuda = args.device.startswith("cuda")
    device = torch.device(args.device)
    rtol = args.rtol if args.rtol is not None else (2e-3 if cuda else 1e-4)
    figures: dict = {"bench": "certainty_shapes", "device": args.device, "rtol": rtol,
                     "prompt_tokens": args.prompt_tokens,
                     "completion_tokens": args.completion_tokens, "repeats": args.repeats}
    peaks: dict[str, float | None] = {}
    if cuda:
        gpu = torch.cuda.get_device_name(device)
        peaks = {"table": table_peak_tflops(gpu), "matmul": measured_matmul_tflops(device)}
        figures.update(gpu=gpu, peak_tflops_table=peaks["table"],
                       peak_tflops_matmul=round(peaks["matmul"], 1))
        print(f"{gpu}: dense bf16 peak {peaks['table']} TFLOP/s (table), "
              f"{peaks['matmul']:.1f} TFLOP/s (8192^3 bf16 matmul, measured)")
    workloads = [parse_workload(w) for w in args.workloads.split(",") if w.strip()]
    rows = []
    ok = True
    for name in names:
        t0 = time.perf_counter()
        model = random_model(SHAPES[name], device=args.device, seed=args.seed)
        backend = TransformersBackend.from_model(model, tokenizer, name=name)
        backend.warmup()
        _, body = parameter_counts(model)
        print(f"\n{name}: {body / 1e6:.0f}M parameters in the decoder layers; built and "
              f"warmed up in {time.perf_counter() - t0:.1f} s; attention {backend.attention}, "
              f"pack budget {backend.pack_tokens} tokens")
        for kind, prompts, group in workloads:
            reqs = make_groups(backend.tokenizer, prompts, group, args, Path(args.data))
            row = sweep_one(backend, reqs, body, args, peaks)
            row.update(shape=name, workload=f"{kind}:{prompts}x{group}")
            rows.append(row)
            ok = ok and row["max_rel_diff"] <= rtol
            _print_sweep_row(row)
        del backend, model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    figures["rows"] = rows
    figures["values_equal"] = ok
    figures["ratio_vs_baseline"] = round(min(r["ratio"] for r in rows), 3) if rows else None
    if not ok:
        print(f"FAIL: values differ by more than {rtol:g} relative", file=sys.stderr)
    print(json.dumps(figures))
    return 0 if ok else 1


def _print_sweep_row(row: dict) -> None:
    mfu = [k for k in ("mfu_table", "mfu_matmul") if k in row]
    head = (f"{'workload':<16} {'method':<9} {'items':>5} {'median s':>9} {'tokens/s':>10} "
            f"{'fwd tok/s':>10} " + " ".join(f"{k:>10}" for k in mfu)
            + f" {'peak MB':>8} {'max rel diff':>12}")
    print(head)
    for side in ("baseline", "ours"):
        items = row["baseline_items"] if side == "baseline" else row["items"]
        secs = row["seconds"][side]
        fwd = row["forward_tokens"][side] / secs
        cells = " ".join(f"{row[k][side] * 100:>9.1f}%" for k in mfu)
        peak = row["peak_mb"].get(side)
        peak_cell = f"{peak:>8.0f}" if peak is not None else f"{'n/a':>8}"
        print(f"{row['workload']:<16} {side:<9} {items:>5} {secs:>9.4f} "
              f"{row['tokens_per_s'][side]:>10.0f} {fwd:>10.0f} {cells} {peak_cell} "
              f"{row['max_rel_diff']:>12.1e}")
    print(f"{row['workload']:<16} ratio: throughput x{row['ratio']:.2f} of the baseline "
          f"({row['items']} items, {row['tokens']} tokens)")


def _tokenizer_dir(args) -> str:
    if args.tokenizer:
        return args.tokenizer
    from reward_server.certainty.model_loading import resolve_model_dir

    folder, _ = resolve_model_dir("embedded", args.cache_dir)
    return str(folder)


# ---------------------------------------------------------------------------- driver
def add_workload_args(ap: argparse.ArgumentParser) -> None:
    """The workload's shape and repeats, the same flags here and in bench_certainty_vllm."""
    ap.add_argument("--prompt-tokens", type=int, default=1500)
    ap.add_argument("--group", type=int, default=8, help="completions per prompt")
    ap.add_argument("--completion-tokens", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_workload_args(ap)
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
    ap.add_argument(
        "--shapes",
        default="",
        help="comma-separated random-weight shapes (model sizes mode), e.g. "
        "SmolLM2-135M,Qwen2.5-0.5B,Qwen2.5-1.5B,Qwen2.5-3B",
    )
    ap.add_argument(
        "--workloads",
        default="shared:8,unrelated:8,training:64x8",
        help="model sizes mode: shared:G, unrelated:N, training:PxG (comma-separated)",
    )
    ap.add_argument(
        "--baseline-items",
        type=int,
        default=0,
        help="model sizes mode: score the baseline on this many items of each workload "
        "(evenly spread; 0: all)",
    )
    ap.add_argument(
        "--tokenizer",
        default="",
        help="model sizes mode: a tokenizer folder (default: the embedded SmolLM2's)",
    )
    ap.add_argument("--side", choices=["baseline", "ours", "timing"], help=argparse.SUPPRESS)
    ap.add_argument("--workload", choices=["shared", "unrelated"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.side:  # child: one side, one workload, print one JSON line
        print(json.dumps(run_timing(args) if args.side == "timing" else run_memory(args)))
        return 0
    if args.shapes:
        return run_sweep(args)

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
