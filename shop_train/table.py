"""The paper's table in miniature: one base model, zero-shot, SFT, SFT + GRPO with the
binary reward, SFT + GRPO with the Shop-R1 reward and, optionally, the ablations; each
evaluated greedily on the same test rows.

Writes, under ``out_dir``: ``results.json`` and ``results.md`` (the table, every setting
and the paper's numbers for orientation), ``plots/*.png`` (per GRPO step: the reward, each
component, the format-failure rate and the terminate share), and one folder per stage
(model, training log, evaluation answers). A stage whose results are already there is
reused, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from shop_task import TaskOptions, build_task
from shop_train.evaluate import EvalSettings, run_eval
from shop_train.grpo import GRPOSettings, run_grpo
from shop_train.local_service import local_service
from shop_train.plots import plot_runs
from shop_train.policy import policy_dir
from shop_train.sft import SFTSettings, run_sft


@dataclass(frozen=True)
class TableBudget:
    task: TaskOptions
    sft: SFTSettings
    grpo: GRPOSettings
    eval: EvalSettings


# ``cpu``: the whole table in about an hour on 2 CPU cores (SmolLM2-135M, bf16 autocast).
# ``gpu``: what one GPU does in a few minutes. ``tiny``: a smoke run of every stage.
BUDGETS = {
    "cpu": TableBudget(
        TaskOptions(),
        SFTSettings(max_rows=256, epochs=1.0, batch_size=8, learning_rate=5e-5),
        GRPOSettings(steps=15, prompts_per_step=2, group_size=4, learning_rate=1e-5,
                     max_completion_length=80),
        EvalSettings(max_rows=96, batch_size=16, max_new_tokens=80),
    ),
    "gpu": TableBudget(
        TaskOptions(),
        SFTSettings(epochs=2.0, batch_size=16, learning_rate=5e-5, device="cuda"),
        GRPOSettings(steps=120, prompts_per_step=8, group_size=8, learning_rate=1e-5,
                     max_completion_length=128, device="cuda"),
        EvalSettings(batch_size=64, max_new_tokens=128, device="cuda"),
    ),
    "tiny": TableBudget(
        TaskOptions(),
        SFTSettings(max_rows=16, epochs=1.0, batch_size=8, max_length=512),
        GRPOSettings(steps=2, prompts_per_step=1, group_size=2, max_completion_length=16),
        EvalSettings(max_rows=8, batch_size=8, max_new_tokens=16, progress=False),
    ),
}

# The GRPO runs: a label and the reward profile it trains with.
MAIN_RUNS = (("SFT + GRPO (binary)", "binary"), ("SFT + GRPO (Shop-R1)", "paper"))
ABLATION_RUNS = (
    ("Shop-R1 without format reward", "no_format"),
    ("Shop-R1 without self-certainty", "no_self_certainty"),
    ("Shop-R1 without DARS", "no_dars"),
)
PAPER = {  # arXiv 2507.17842, Qwen2.5-3B-Instruct; exact action accuracy (%)
    "zero-shot": 0.32, "SFT": 16.76, "SFT + GRPO (binary)": 16.55,
    "SFT + GRPO (Shop-R1)": 27.72, "Shop-R1 without format reward": 2.87,
}


def run_table(
    out_dir: str | Path,
    model: str = "embedded",
    budget: TableBudget = BUDGETS["cpu"],
    ablations: bool = False,
    reward_url: str | None = None,
) -> dict[str, Any]:
    """Run every stage (see the module docstring) and write the table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = build_task(options=budget.task)
    base = policy_dir(model)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    rows.append(_evaluated("zero-shot", base, task.test, budget.eval, out / "zero-shot", None))
    sft_dir = out / "sft"
    sft = _stage(sft_dir, lambda: run_sft(base, sft_dir, task.train, budget.sft))
    rows.append(_evaluated("SFT", sft_dir, task.test, budget.eval, sft_dir, sft))
    runs = MAIN_RUNS + (ABLATION_RUNS if ablations else ())
    curves = {}
    with _service(reward_url, out) as url:
        for label, profile in runs:
            folder = out / f"grpo-{profile}"
            settings = replace(budget.grpo, profile=profile)
            summary = _stage(
                folder, lambda f=folder, s=settings: run_grpo(sft_dir, f, task.train, url, s)
            )
            curves[label] = summary["steps"]
            rows.append(_evaluated(label, folder, task.test, budget.eval, folder, summary))
    plots = plot_runs(curves, out / "plots")
    results = {
        "model": model, "base_dir": str(base), "rows": rows,
        "settings": {
            "task": asdict(budget.task), "sft": asdict(budget.sft),
            "grpo": asdict(budget.grpo), "eval": asdict(budget.eval),
        },
        "task": {"train_rows": len(task.train), "test_rows": len(task.test),
                 "skipped_lines": len(task.skipped)},
        "plots": [str(p.relative_to(out)) for p in plots],
        "seconds": time.perf_counter() - started,
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "paper_exact_accuracy_percent": PAPER,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "results.md").write_text(markdown_table(results), encoding="utf-8")
    return results


def _service(reward_url: str | None, out: Path) -> Any:
    if reward_url:
        from contextlib import nullcontext

        return nullcontext(reward_url)
    return local_service("none", log_path=out / "service.log")


def _stage(folder: Path, run: Any) -> dict[str, Any]:
    summary = folder / "summary.json"
    if summary.is_file() and (folder / "config.json").is_file():
        return json.loads(summary.read_text(encoding="utf-8"))
    return run()


def _evaluated(
    label: str, policy: Path, rows: Any, settings: EvalSettings, folder: Path,
    training: dict[str, Any] | None,
) -> dict[str, Any]:
    path = folder / "eval.json"
    if path.is_file():
        report = json.loads(path.read_text(encoding="utf-8"))
    else:
        report = run_eval(policy, rows, settings, path)
    return {
        "label": label, "metrics": report["metrics"], "eval_rows": report["rows"],
        "eval_seconds": report["seconds"],
        "train_seconds": training["seconds"] if training else None,
    }


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def markdown_table(results: dict[str, Any]) -> str:
    """The results as Markdown: the table, then the paper's numbers for orientation."""
    lines = [
        "| model | exact acc. | type acc. | type macro-F1 | click exact | "
        "type_and_submit exact | terminate exact | format failures | terminate share | "
        "train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        m = row["metrics"]
        per = m["per_type"]
        train = "" if row["train_seconds"] is None else f"{row['train_seconds']:.0f}"
        lines.append(
            f"| {row['label']} | {_percent(m['exact_accuracy'])} | "
            f"{_percent(m['type_accuracy'])} | {_percent(m['type_macro_f1'])} | "
            f"{_percent(per['click']['exact_accuracy'])} | "
            f"{_percent(per['type_and_submit']['exact_accuracy'])} | "
            f"{_percent(per['terminate']['exact_accuracy'])} | "
            f"{_percent(m['format_failure_rate'])} | {_percent(m['terminate_share'])} | "
            f"{train} |"
        )
    count = results["rows"][0]["eval_rows"] if results["rows"] else 0
    lines += [
        "",
        f"Percent over {count} test rows (held-out episodes), greedy decoding. "
        f"Model: {results['model']}. Whole run: {results['seconds'] / 60:.1f} min.",
        "",
        "Paper (Qwen2.5-3B-Instruct, exact action accuracy %, for orientation only: another "
        "model, data set and budget): "
        + ", ".join(f"{k} {v}" for k, v in results["paper_exact_accuracy_percent"].items()),
        "",
    ]
    return "\n".join(lines)
