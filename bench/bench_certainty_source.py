"""Benchmark: what the policy's self-certainty costs a GRPO step, by where it comes from.

The Shop-R1 rationale reward is the *policy's* self-certainty (REWARD_CONTRACT.md §4).
A GRPO run can get it two ways (``shop_train.grpo``):

* ``policy``: computed in the trainer from the policy being trained (one extra forward
  per completion, no gradient) and sent as ``provided``;
* ``service``: the service's model scores it, reloaded from the policy's checkpoint every
  ``--reload-every`` steps (checkpoint written, ``POST /v1/reload``, then the service's
  own forward of every completion).

Against the named baseline, the same GRPO steps with **no self-certainty** (``none``),
each variant runs ``--steps`` real GRPO steps of the same policy on the same rows, with a
real service (rules only for ``none`` and ``policy``; the same policy's weights for
``service``). Reports seconds per step (median over the steps after the first, which
carries start-up costs) and each variant's ratio to the baseline, then one JSON line.
Values are not compared here: ``tests/train/test_stages.py`` checks that the policy's
value equals the service's for the same weights.

    python bench/bench_certainty_source.py --model runs/sft [--steps 4] [--reload-every 2]

``--model`` should be a policy that answers in the task's format (an SFT checkpoint,
``shop-r1-train sft``): the base model answers in prose, its answers fail the format, and
no self-certainty is computed for them, so every variant would cost the same. The JSON
line reports the share of well-formed answers each variant saw.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shop_task import build_task  # noqa: E402
from shop_train.grpo import GRPOSettings, run_grpo  # noqa: E402
from shop_train.local_service import local_service  # noqa: E402
from shop_train.policy import policy_dir  # noqa: E402


def format_ok_share(summary: dict) -> float:
    steps = [s for s in summary["steps"] if "format_failure" in s]
    return 1 - statistics.mean(s["format_failure"] for s in steps) if steps else 0.0


def step_seconds(summary: dict) -> float:
    """Median seconds of the steps after the first (TRL logs each step's ``step_time``)."""
    times = [s["step_time"] for s in summary["steps"] if "step_time" in s]
    return statistics.median(times[1:] or times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--reload-every", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=64)
    args = parser.parse_args()

    policy = policy_dir(args.model)
    rows = build_task().train
    base = GRPOSettings(
        steps=args.steps, prompts_per_step=1, group_size=args.group_size,
        max_completion_length=args.max_completion_length, max_rows=16,
        reload_every=args.reload_every,
    )
    seconds: dict[str, float] = {}
    well_formed: dict[str, float] = {}
    extra: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with local_service("none") as url:
            for source in ("none", "policy"):
                settings = replace(base, certainty=source)
                summary = run_grpo(policy, work / source, rows, url, settings)
                seconds[source] = step_seconds(summary)
                well_formed[source] = format_ok_share(summary)
        key = secrets.token_hex(16)
        served = ("--reload-root", str(work), "--api-key", key)
        with local_service(str(policy), extra_args=served) as url:
            summary = run_grpo(
                policy, work / "service", rows, url, replace(base, certainty="service"), key
            )
            seconds["service"] = step_seconds(summary)
            well_formed["service"] = format_ok_share(summary)
            extra["reload_seconds_per_reload"] = summary["reload_seconds"] / max(
                summary["reloads"], 1
            )
    print(f"{'self-certainty from':<22}{'s/step':>10}{'x none':>10}")
    for source, value in seconds.items():
        print(f"{source:<22}{value:>10.2f}{value / seconds['none']:>10.2f}")
    print(json.dumps({
        "bench": "certainty_source",
        "ratio_vs_baseline": seconds["policy"] / seconds["none"],
        "ratio_service_vs_baseline": seconds["service"] / seconds["none"],
        "baseline": "GRPO steps without self-certainty",
        "seconds_per_step": seconds, "well_formed_share": well_formed, **extra,
        "steps": args.steps, "reload_every": args.reload_every,
        "group_size": args.group_size, "model": args.model,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
