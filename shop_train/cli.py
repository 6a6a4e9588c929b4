"""``shop-r1-train``: one command per stage of the Shop-R1 pipeline, and the table.

    shop-r1-train task rows/                          # the task in every trainer's format
    shop-r1-train sft --out runs/sft                  # SFT of the embedded SmolLM2
    shop-r1-reward serve --model none &               # the reward service
    shop-r1-train grpo --model runs/sft --out runs/grpo --reward-url http://127.0.0.1:8000
    shop-r1-train eval --model runs/grpo --out runs/grpo/eval.json
    shop-r1-train table --out results/                # every stage, the table and plots

Every command takes the task's options (``--history``, ``--distractors``, ``--seed``,
``--test-fraction``, ``--steps-file``) and ``--device cpu|cuda|auto``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from shop_task.__main__ import add_task_arguments, options_from
from shop_task.__main__ import main as task_main

PROFILE_CHOICES = ("paper", "binary", "no_format", "no_self_certainty", "no_dars")


def _common(parser: argparse.ArgumentParser) -> None:
    add_task_arguments(parser)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def _sft(args: argparse.Namespace) -> dict[str, Any]:
    from shop_task import build_task
    from shop_train.policy import policy_dir, resolve_device
    from shop_train.rationales import load_rationales
    from shop_train.sft import SFTSettings, run_sft

    settings = SFTSettings(
        epochs=args.epochs, max_rows=args.rows, batch_size=args.batch_size,
        learning_rate=args.learning_rate, lora=args.lora, seed=args.seed,
        device=resolve_device(args.device),
    )
    rationales = load_rationales(args.rationales) if args.rationales else None
    task = build_task(args.steps_file, options_from(args))
    return run_sft(policy_dir(args.model), args.out, task.train, settings, rationales)


def _grpo(args: argparse.Namespace) -> dict[str, Any]:
    from shop_task import build_task
    from shop_train.grpo import GRPOSettings, run_grpo
    from shop_train.policy import policy_dir, resolve_device

    settings = GRPOSettings(
        steps=args.grpo_steps, prompts_per_step=args.prompts_per_step,
        group_size=args.group_size, learning_rate=args.learning_rate,
        temperature=args.temperature, beta=args.beta, profile=args.profile,
        certainty=args.certainty, reload_every=args.reload_every, lora=args.lora,
        max_completion_length=args.max_completion_length, max_rows=args.rows,
        seed=args.seed, device=resolve_device(args.device),
    )
    task = build_task(args.steps_file, options_from(args))
    return run_grpo(
        policy_dir(args.model), args.out, task.train, args.reward_url, settings, args.api_key
    )


def _eval(args: argparse.Namespace) -> dict[str, Any]:
    from shop_task import build_task
    from shop_train.evaluate import EvalSettings, run_eval
    from shop_train.policy import policy_dir, resolve_device

    settings = EvalSettings(
        max_rows=args.rows, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        seed=args.seed, device=resolve_device(args.device),
    )
    task = build_task(args.steps_file, options_from(args))
    report = run_eval(policy_dir(args.model), task.split(args.split), settings, args.out)
    return report["metrics"]


def _table(args: argparse.Namespace) -> dict[str, Any]:
    from shop_train.policy import resolve_device
    from shop_train.table import BUDGETS, run_table

    budget = BUDGETS[args.budget]
    device = resolve_device(args.device)
    budget = replace(
        budget,
        task=options_from(args),
        sft=replace(budget.sft, device=device, **_given(args, max_rows="sft_rows")),
        grpo=replace(budget.grpo, device=device, **_given(args, steps="grpo_steps")),
        eval=replace(budget.eval, device=device, **_given(args, max_rows="eval_rows")),
    )
    results = run_table(args.out, args.model, budget, args.ablations, args.reward_url)
    return {"table": f"{args.out}/results.md", "rows": len(results["rows"])}


def _given(args: argparse.Namespace, **fields: str) -> dict[str, Any]:
    return {field: getattr(args, name) for field, name in fields.items()
            if getattr(args, name) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shop-r1-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    task = commands.add_parser("task", help="write the task's rows in every trainer's format")
    task.add_argument("rest", nargs=argparse.REMAINDER, help="see python -m shop_task --help")

    sft = commands.add_parser("sft", help="supervised fine-tuning on the train split")
    _common(sft)
    sft.add_argument("--model", default="embedded", help="'embedded' or a model directory")
    sft.add_argument("--out", required=True, help="where the fine-tuned model goes")
    sft.add_argument("--rows", type=int, help="train rows used (seeded sample; default all)")
    sft.add_argument("--epochs", type=float, default=1.0)
    sft.add_argument("--batch-size", type=int, default=8)
    sft.add_argument("--learning-rate", type=float, default=5e-5)
    sft.add_argument("--lora", action="store_true", help="LoRA adapters (merged when saved)")
    sft.add_argument("--rationales", help="JSONL {episode_id, step, rationale} (default: "
                     "a short stand-in written from the goal and the action)")
    sft.set_defaults(run=_sft)

    grpo = commands.add_parser("grpo", help="GRPO against a running reward service")
    _common(grpo)
    grpo.add_argument("--model", required=True, help="the policy to start from (an SFT dir)")
    grpo.add_argument("--out", required=True)
    grpo.add_argument("--reward-url", default="http://127.0.0.1:8000")
    grpo.add_argument("--api-key", help="the service's key (needed by --certainty service)")
    grpo.add_argument("--profile", default="paper", choices=PROFILE_CHOICES)
    grpo.add_argument("--grpo-steps", type=int, default=20, help="optimizer steps")
    grpo.add_argument("--prompts-per-step", type=int, default=2)
    grpo.add_argument("--group-size", type=int, default=4, help="completions per prompt")
    grpo.add_argument("--learning-rate", type=float, default=1e-5)
    grpo.add_argument("--temperature", type=float, default=0.6, help="sampling (paper: 0.6)")
    grpo.add_argument("--beta", type=float, default=0.001, help="KL coefficient (paper: 0.001)")
    grpo.add_argument("--max-completion-length", type=int, default=96)
    grpo.add_argument("--certainty", default="policy", choices=("policy", "service", "none"),
                      help="where self-certainty comes from (default: the policy itself)")
    grpo.add_argument("--reload-every", type=int, default=5,
                      help="with --certainty service: reload the service's model every N steps")
    grpo.add_argument("--rows", type=int, help="train rows used (seeded sample; default all)")
    grpo.add_argument("--lora", action="store_true")
    grpo.set_defaults(run=_grpo)

    evaluate = commands.add_parser("eval", help="greedy evaluation on the test split")
    _common(evaluate)
    evaluate.add_argument("--model", required=True, help="'embedded' or a model directory")
    evaluate.add_argument("--out", help="JSON report (metrics, settings, every answer)")
    evaluate.add_argument("--split", default="test", choices=("test", "train"))
    evaluate.add_argument("--rows", type=int, help="rows evaluated (seeded sample)")
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--max-new-tokens", type=int, default=96)
    evaluate.set_defaults(run=_eval)

    table = commands.add_parser("table", help="every stage, the table and the plots")
    _common(table)
    table.add_argument("--out", required=True)
    table.add_argument("--model", default="embedded", help="'embedded' or a model directory")
    table.add_argument("--budget", default="cpu", choices=("cpu", "gpu", "tiny"))
    table.add_argument("--ablations", action="store_true",
                       help="also no format reward, no self-certainty and no DARS")
    table.add_argument("--reward-url", help="a running service (default: start one)")
    table.add_argument("--sft-rows", type=int)
    table.add_argument("--grpo-steps", type=int)
    table.add_argument("--eval-rows", type=int)
    table.set_defaults(run=_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "task":
        return task_main(args.rest)
    print(json.dumps(args.run(args), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
