"""Benchmark: rule-based Shop-R1 rewards (REWARD_CONTRACT.md §2, 3, 5), library vs baseline.

Builds a deterministic, realistic mix of (completion, ground truth) items from the real
shopping steps in ``data/shopping-steps/`` (all three action types; first-person
rationales of 1-3 sentences; predictions that are exact, near misses around the 0.75
similarity threshold, the wrong type, missing/blank fields, another target of the right
type, or malformed), then scores them with

* the library, rewards only: ``reward_batch`` with ``RewardConfig()`` on the same
  ground-truth objects (it checks each one): the same output as the baseline, so its
  ratio is the like-for-like figure, ``ratio_vs_baseline``;
* the library with every item's breakdown: ``score_batch`` (components, score, parse
  outcome, rationale span), reported beside it as ``ratio_breakdowns_vs_baseline``;
* a plain baseline a user would write: stdlib ``json.loads`` + the contract's checks +
  ``rouge_score.rouge_scorer.RougeScorer(["rougeL"])`` created once.

Every reward must agree to 1e-9 (the benchmark fails otherwise). Each side is warmed up,
then timed over all the items ``--repeats`` times; within a repeat the sides take turns
every ``--chunk`` items, so that the shared machine's shifts in speed hit all alike. The
library's memo caches are cleared before each repeat, so no prediction is a cache hit
from an earlier one. Prints a table, then one JSON line of the figures.

    python bench/bench_rules.py [--items 10000] [--repeats 9] [--chunk 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rouge_score import rouge_scorer  # noqa: E402

from reward_server.config import RewardConfig  # noqa: E402
from reward_server.rewards import RewardBreakdown, reward_batch, score_batch  # noqa: E402
from reward_server.rewards import parsing as _parsing  # noqa: E402
from reward_server.rewards import similarity as _similarity  # noqa: E402

DATA = ROOT / "data" / "shopping-steps"
STEP_FILES = [
    "mind2web_shopping_steps.jsonl",
    "webshop_human_search_queries.jsonl",
    "wands_wayfair_queries.jsonl",
    "esci_amazon_queries.jsonl",
]

# ----------------------------------------------------------------------------------------
# The realistic mix
# ----------------------------------------------------------------------------------------

GT_TYPE_WEIGHTS = {"type_and_submit": 0.45, "click": 0.40, "terminate": 0.15}
PRED_KIND_WEIGHTS = {
    "exact": 0.30,
    "near_miss": 0.28,
    "other_target": 0.10,
    "wrong_type": 0.12,
    "empty_field": 0.08,
    "malformed": 0.12,
}

SEARCH_RATIONALES = [
    "I am looking for {goal}. The quickest way to find it is the search box, so I type "
    "what I have in mind.",
    "I want {goal}. I'll search for it directly instead of browsing the categories.",
    "I need {goal} and nothing on this page matches it. I search for it so I can compare a "
    "few options. Then I will look at the reviews.",
    "Since I came here for {goal}, I type a short query into the search field.",
]
CLICK_RATIONALES = [
    "I want to check '{target}' before deciding, so I click it.",
    "I'm shopping for {goal}. The '{target}' option narrows the results to what I need.",
    "The results look promising, but I want to see more detail. I click '{target}' to continue.",
    "I have seen enough of this list. Clicking '{target}' gets me closer to {goal}.",
]
TERMINATE_RATIONALES = [
    "None of these products fit what I was looking for. I am done here, so I leave.",
    "I've compared the options and the prices are too high for me. I close the browser.",
    "I could not find {goal} at a price I like. I give up for now.",
]


def load_steps() -> dict[str, list[dict[str, Any]]]:
    """Ground-truth candidates per action type from the real shopping steps."""
    if not (DATA / STEP_FILES[0]).exists():
        raise SystemExit(f"shopping steps not found in {DATA}")
    steps: dict[str, list[dict[str, Any]]] = {"click": [], "type_and_submit": [], "terminate": []}
    for name in STEP_FILES:
        with open(DATA / name, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                kind = row["kind"]
                if kind == "click" and not row.get("name", "").strip():
                    continue
                if kind == "type_and_submit" and not (
                    row.get("name", "").strip() and row.get("text", "").strip()
                ):
                    continue
                steps[kind].append(row)
    return steps


def ground_truth_of(row: dict[str, Any]) -> dict[str, str]:
    kind = row["kind"]
    if kind == "terminate":
        return {"type": "terminate"}
    if kind == "click":
        return {"type": "click", "name": row["name"]}
    return {"type": "type_and_submit", "name": row["name"], "text": row["text"]}


def typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + rng.choice("aeiou")
    i = rng.randrange(len(word) - 1)
    edit = rng.randrange(3)
    if edit == 0:  # transpose
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if edit == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i + 1 :]


def near_miss(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    """A word dropped/swapped/added/misspelt; more edits for longer text, so that the
    similarity lands around the 0.75 threshold."""
    words = text.split()
    edits = max(1, round(len(words) / 4)) + rng.choice([-1, 0, 0, 1])
    for _ in range(max(1, edits)):
        op = rng.randrange(4)
        if op == 0 and len(words) > 1:
            del words[rng.randrange(len(words))]
        elif op == 1 and len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == 2:
            words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
        else:
            i = rng.randrange(len(words))
            words[i] = typo(words[i], rng)
    return " ".join(words) or text


def rationale_for(gt: dict[str, str], row: dict[str, Any], rng: random.Random) -> str:
    goal = (row.get("context_hint") or "something for my home").rstrip(".").lower()
    goal = goal.removeprefix("i am looking for ").removeprefix("i'm looking for ")
    if len(goal) > 90:
        goal = goal[:90].rsplit(" ", 1)[0]
    templates = {
        "type_and_submit": SEARCH_RATIONALES,
        "click": CLICK_RATIONALES,
        "terminate": TERMINATE_RATIONALES,
    }[gt["type"]]
    return rng.choice(templates).format(goal=goal, target=gt.get("name", "it")[:40])


def serialise(rationale: str, action: dict[str, Any], rng: random.Random) -> str:
    style = rng.random()
    body = {"rationale": rationale, "action": action}
    if style < 0.6:
        return json.dumps(body)
    if style < 0.8:
        return json.dumps(body, indent=2)
    if style < 0.9:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return "\n  " + json.dumps(dict(reversed(list(body.items())))) + "\n"


def malformed(rationale: str, action: dict[str, Any], rng: random.Random) -> str:
    good = json.dumps({"rationale": rationale, "action": action})
    choice = rng.randrange(10)
    if choice == 0:
        return "```json\n" + good + "\n```"
    if choice == 1:
        return "Here is my next step: " + good
    if choice == 2:
        return json.dumps({"rationale": rationale, "action": action, "confidence": 0.9})
    if choice == 3:
        return json.dumps({"action": action})
    if choice == 4:
        return good[: rng.randrange(5, len(good) - 1)]  # truncated generation
    if choice == 5:
        return json.dumps({"rationale": rationale, "action": {**action, "type": "scroll"}})
    if choice == 6:
        return good.replace('"', "'")
    if choice == 7:
        return json.dumps({"rationale": "   ", "action": action})
    if choice == 8:
        return json.dumps({"rationale": rationale, "action": {**action, "element_id": 12}})
    return json.dumps({"rationale": rationale, "action": action["type"]})


def build_items(
    count: int, seed: int
) -> tuple[list[str], list[dict[str, str]], list[str], Counter]:
    """``count`` (completion, ground truth) items, each item's prediction kind, the mix."""
    rng = random.Random(seed)
    steps = load_steps()
    vocabulary = sorted({w for row in steps["type_and_submit"] for w in row["text"].split()})
    types, type_weights = zip(*GT_TYPE_WEIGHTS.items(), strict=True)
    kinds, kind_weights = zip(*PRED_KIND_WEIGHTS.items(), strict=True)
    completions: list[str] = []
    truths: list[dict[str, str]] = []
    item_kinds: list[str] = []
    mix: Counter = Counter()
    for _ in range(count):
        gt_type = rng.choices(types, type_weights)[0]
        row = rng.choice(steps[gt_type])
        gt = ground_truth_of(row)
        kind = rng.choices(kinds, kind_weights)[0]
        if gt_type == "terminate" and kind in ("near_miss", "other_target", "empty_field"):
            kind = "exact"
        action: dict[str, Any] = dict(gt)
        if kind == "near_miss":
            key = "name" if gt_type == "click" else "text"
            action[key] = near_miss(gt[key], rng, vocabulary)
            if gt_type == "type_and_submit" and rng.random() < 0.2:
                action["name"] = near_miss(gt["name"], rng, vocabulary)
        elif kind == "other_target":
            action = ground_truth_of(rng.choice(steps[gt_type]))
        elif kind == "wrong_type":
            other = rng.choice([t for t in types if t != gt_type])
            action = ground_truth_of(rng.choice(steps[other]))
        elif kind == "empty_field":
            key = rng.choice(["name"] if gt_type == "click" else ["name", "text", "text"])
            if rng.random() < 0.5:
                action.pop(key)
            else:
                action[key] = rng.choice(["", " ", "\n"])
        rationale = rationale_for(gt, row, rng)
        if kind == "malformed":
            completion = malformed(rationale, action, rng)
        else:
            completion = serialise(rationale, action, rng)
        completions.append(completion)
        truths.append(gt)
        item_kinds.append(kind)
        mix[(gt_type, kind)] += 1
    return completions, truths, item_kinds, mix


# ----------------------------------------------------------------------------------------
# The baseline a user would write: stdlib json + rouge-score, the contract's rules directly
# ----------------------------------------------------------------------------------------

ACTION_TYPES = ("click", "type_and_submit", "terminate")
# rouge-score's float F1 can sit one ulp under a mathematically exact 0.75 (e.g. LCS 3 of 3
# predicted and 5 reference tokens gives 0.7499999999999999); the contract means the exact
# value, which the library computes correctly rounded, so the baseline allows that ulp.
THRESHOLD_SLACK = 1e-12


class Baseline:
    def __init__(self, config: RewardConfig) -> None:
        self.c = config
        self.scorer = rouge_scorer.RougeScorer(["rougeL"])

    @staticmethod
    def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            raise ValueError("duplicate key")
        return result

    @staticmethod
    def _no_constants(literal: str) -> Any:
        raise ValueError(literal)

    def parse(self, completion: str) -> dict[str, str] | None:
        """The action of a well-formed completion (REWARD_CONTRACT.md §2), else None."""
        if len(completion) > self.c.max_completion_chars:
            return None
        try:
            obj = json.loads(
                completion.strip(),
                object_pairs_hook=self._no_duplicates,
                parse_constant=self._no_constants,
            )
        except (ValueError, RecursionError):
            return None
        if not isinstance(obj, dict) or set(obj) != {"rationale", "action"}:
            return None
        rationale, action = obj["rationale"], obj["action"]
        if not isinstance(rationale, str) or not rationale.strip():
            return None
        if not isinstance(action, dict) or not set(action) <= {"type", "name", "text"}:
            return None
        if action.get("type") not in ACTION_TYPES:
            return None
        if not all(isinstance(action.get(k, ""), str) for k in ("name", "text")):
            return None
        return action

    def sim(self, prediction: str, target: str) -> float:
        value = self.scorer.score(target, prediction)["rougeL"].fmeasure
        return value if value >= self.c.similarity_threshold - THRESHOLD_SLACK else 0.0

    def reward(self, completion: str, gt: dict[str, str]) -> float:
        c = self.c
        action = self.parse(completion)
        if action is None:
            return 0.0
        total = c.format_weight
        if action["type"] != gt["type"]:
            return total
        total += c.type_weight
        name, text = action.get("name", ""), action.get("text", "")
        if gt["type"] == "click":
            total += c.click_name_presence if name.strip() else 0.0
            total += c.dars * self.sim(name, gt["name"])
        elif gt["type"] == "type_and_submit":
            total += c.type_name_presence if name.strip() else 0.0
            total += c.type_text_presence if text.strip() else 0.0
            total += c.name_similarity_weight * self.sim(name, gt["name"])
            total += c.dars * self.sim(text, gt["text"])
        return total

    def score_all(self, completions: list[str], truths: list[dict[str, str]]) -> list[float]:
        return [self.reward(text, gt) for text, gt in zip(completions, truths, strict=True)]


# ----------------------------------------------------------------------------------------
# The library side
# ----------------------------------------------------------------------------------------


# The reward core's memo caches (similarity's target tokens, parsed ground-truth strings),
# found by what they are rather than by name, so a renamed cache is still cleared.
MEMO_MODULES = (_parsing, _similarity)


def clear_library_caches() -> None:
    cleared = 0
    for module in MEMO_MODULES:
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
                cleared += 1
    if not cleared:
        raise SystemExit("FAIL: the reward core has no memo cache to clear; update the bench")


def library_scores(
    completions: list[str], truths: list[dict[str, str]], config: RewardConfig
) -> tuple[list[RewardBreakdown], list[float]]:
    """Every item's breakdown, and the rewards read from them."""
    breakdowns = score_batch(completions, truths, config)
    return breakdowns, [item.reward for item in breakdowns]


def timed(fn: Any) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


# The timed sides and their labels.
SIDES = {
    "rewards": "library, rewards only (reward_batch)",
    "breakdowns": "library, breakdowns (score_batch)",
    "baseline": "baseline (json + rouge-score)",
}


def timed_repeat(
    completions: list[str],
    truths: list[dict[str, str]],
    config: RewardConfig,
    baseline: Baseline,
    chunk: int,
) -> dict[str, tuple[float, float, list[float]]]:
    """One timed repeat of every side over every item: side -> (wall seconds, CPU
    seconds, rewards).

    The sides take turns chunk by chunk (rotating which goes first), so a shift in the
    shared machine's speed, which here lasts from tens to hundreds of milliseconds, lands
    on all of them alike. The library's results of every chunk (breakdowns included) stay
    alive until the repeat ends, as a whole batch's would, and its memo caches start empty.
    """
    clear_library_caches()
    # Each side gives (what its caller holds, the rewards).
    runs = {
        "rewards": lambda t, g: (None, reward_batch(t, g, config)),
        "breakdowns": lambda t, g: library_scores(t, g, config),
        "baseline": lambda t, g: (None, baseline.score_all(t, g)),
    }
    order = list(runs)
    seconds = {side: [0.0, 0.0] for side in runs}
    kept: dict[str, list[tuple[Any, list[float]]]] = {side: [] for side in runs}
    for turn, start in enumerate(range(0, len(completions), chunk)):
        texts, golds = completions[start : start + chunk], truths[start : start + chunk]
        shift = turn % len(order)
        for side in order[shift:] + order[:shift]:
            wall, cpu, result = timed(lambda r=runs[side], t=texts, g=golds: r(t, g))
            seconds[side][0] += wall
            seconds[side][1] += cpu
            kept[side].append(result)
    return {
        side: (*seconds[side], [r for _, part in kept[side] for r in part])  # type: ignore[misc]
        for side in runs
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000, help="items in the mix")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats per side")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mix")
    parser.add_argument(
        "--chunk", type=int, default=1_000, help="items per turn when the sides alternate"
    )
    args = parser.parse_args(argv)
    if args.items < 1 or args.repeats < 1 or args.chunk < 1:
        parser.error("--items, --repeats and --chunk must be positive")

    config = RewardConfig()
    completions, truths, item_kinds, mix = build_items(args.items, args.seed)
    baseline = Baseline(config)

    # Correctness first: every reward equal within 1e-9, and the mix is what it claims.
    clear_library_caches()
    lib = reward_batch(completions, truths, config)
    if library_scores(completions, truths, config)[1] != lib:
        raise SystemExit("FAIL: reward_batch and score_batch disagree")
    base = baseline.score_all(completions, truths)
    bad = [
        i
        for i, (a, b) in enumerate(zip(lib, base, strict=True))
        if not (math.isfinite(a) and abs(a - b) <= 1e-9)
    ]
    if bad:
        for i in bad[:10]:
            print(
                f"MISMATCH item {i}: library {lib[i]!r} baseline {base[i]!r}\n"
                f"  completion {completions[i]!r}\n  ground truth {truths[i]!r}",
                file=sys.stderr,
            )
        raise SystemExit(f"FAIL: {len(bad)} of {len(lib)} rewards differ (> 1e-9)")

    # Timing: warm-up, then repeats with the sides taking turns; median per side.
    timed_repeat(completions[:500], truths[:500], config, baseline, args.chunk)
    walls: dict[str, list[float]] = {side: [] for side in SIDES}
    cpus: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(args.repeats):
        for side, (wall, cpu, rewards) in timed_repeat(
            completions, truths, config, baseline, args.chunk
        ).items():
            if side != "baseline" and rewards != lib:
                raise SystemExit(f"FAIL: the library ({side}) is not deterministic")
            walls[side].append(wall)
            cpus[side].append(cpu)
    rate = {side: args.items / statistics.median(walls[side]) for side in SIDES}
    ratio = rate["rewards"] / rate["baseline"]
    breakdown_ratio = rate["breakdowns"] / rate["baseline"]
    cpu_ratio = statistics.median(cpus["baseline"]) / statistics.median(cpus["rewards"])
    breakdown_cpu_ratio = (
        statistics.median(cpus["baseline"]) / statistics.median(cpus["breakdowns"])
    )

    # Report.
    n = args.items
    failed = sum(1 for r in lib if r == 0.0)
    by_gt = Counter(gt["type"] for gt in truths)
    value_hits = sum(
        1 for r, gt in zip(lib, truths, strict=True) if gt["type"] != "terminate" and r >= 500
    )
    print(
        f"bench_rules: {n} items, seed {args.seed}, {args.repeats} repeats, "
        f"python {sys.version.split()[0]}"
    )
    print("mix (ground truth type x prediction kind):")
    kinds = list(PRED_KIND_WEIGHTS)
    print(f"  {'':<17}" + "".join(f"{k:>13}" for k in kinds))
    for t in GT_TYPE_WEIGHTS:
        print(f"  {t:<17}" + "".join(f"{mix[(t, k)]:>13}" for k in kinds))
    print(
        f"  ground truths: {dict(by_gt)}; format failures: {failed}; "
        f"items over the similarity threshold: {value_hits}"
    )
    near = [
        (r, gt)
        for r, gt, key in zip(lib, truths, item_kinds, strict=True)
        if key == "near_miss" and gt["type"] != "terminate"
    ]
    crossing = sum(1 for r, _ in near if r >= 500)
    print(f"  near misses at/above the 0.75 threshold: {crossing}/{len(near)}")
    print(f"rewards identical (|diff| <= 1e-9): {n}/{n}")
    print()
    print(
        f"  {'side':<40}{'median s':>10}{'items/s':>10}{'us/item':>9}{'min s':>8}"
        f"{'max s':>8}{'CPU s':>8}"
    )
    for side, label in SIDES.items():
        median = statistics.median(walls[side])
        print(
            f"  {label:<40}{median:>10.4f}{n / median:>10.0f}{median / n * 1e6:>9.2f}"
            f"{min(walls[side]):>8.4f}{max(walls[side]):>8.4f}"
            f"{statistics.median(cpus[side]):>8.4f}"
        )
    print(
        f"  ratio (rewards only / baseline, like for like, median wall-clock items/s): "
        f"{ratio:.2f}x   (target >= 3x); by median CPU time: {cpu_ratio:.2f}x"
    )
    print(
        f"  ratio (breakdowns / baseline): {breakdown_ratio:.2f}x; by median CPU time: "
        f"{breakdown_cpu_ratio:.2f}x"
    )
    print(
        json.dumps(
            {
                "bench": "rules",
                "items": n,
                "repeats": args.repeats,
                "library_items_per_s": round(rate["rewards"], 1),
                "breakdowns_items_per_s": round(rate["breakdowns"], 1),
                "baseline_items_per_s": round(rate["baseline"], 1),
                "ratio_breakdowns_vs_baseline": round(breakdown_ratio, 3),
                "ratio_cpu_time": round(cpu_ratio, 3),
                "ratio_breakdowns_cpu_time": round(breakdown_cpu_ratio, 3),
                "ratio_vs_baseline": round(ratio, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
