"""Workload for the reliability proofs: realistic items and their expected rewards.

Items come from the real shopping steps in ``data/shopping-steps`` (or a small
built-in set where that folder is absent) and cover every outcome the reward core has:
exact and partial actions, wrong types, and format failures of several kinds. Each
item's expected reward is computed in-process with the same pure core the server uses
(``score_completion`` with ``RewardConfig()``), so a response can be checked field by
field: any lost, mismatched or reordered result is counted.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

from reward_server.config import RewardConfig
from reward_server.rewards import parse_ground_truth, score_completion
from tests.conftest import shopping_steps

ALPHA = RewardConfig().alpha

RATIONALES = [
    "I am looking for {q}, so I type it into the search box to see what the store has.",
    "The results look relevant; I want to narrow them down before I compare prices.",
    "This item matches what I need and the reviews look fine, so I open it.",
    "Nothing here fits my budget and I have seen enough, so I leave the site.",
]
FALLBACK_STEPS = [
    {"kind": "type_and_submit", "name": "search_input", "text": "usb c cable 2m braided"},
    {"kind": "type_and_submit", "name": "Search by keyword or web id", "text": "wall art"},
    {"kind": "click", "name": "add_to_cart.buy_now", "text": ""},
    {"kind": "click", "name": "Price", "text": ""},
    {"kind": "terminate", "name": "", "text": ""},
]


def load_steps() -> list[dict]:
    return shopping_steps() or FALLBACK_STEPS


@dataclass(frozen=True)
class Expected:
    """What the server must answer for one item (rules part; certainty checked apart)."""

    reward: float
    score: float
    components: tuple[float, float, float, float]  # format, type, attribute, value
    format_ok: bool
    format_reason: str | None
    action: dict | None


@dataclass(frozen=True)
class Case:
    completion: str
    ground_truth: dict
    expected: Expected
    prompt: str

    def item(self, item_id: str | int) -> dict[str, Any]:
        return {"id": item_id, "completion": self.completion, "ground_truth": self.ground_truth,
                "prompt": self.prompt}


def _prompt(step: dict) -> str:
    """The shopper's session as the policy would see it: the task and the page."""
    task = step.get("context_hint") or "browse the store"
    return f"Task: {task}\nPage: <html><input name=\"search_input\"/></html>\nNext action:"


def _truth_of(step: dict) -> dict:
    kind = step["kind"]
    truth: dict[str, Any] = {"type": kind}
    if kind != "terminate":
        truth["name"] = step.get("name") or "search_input"
    if kind == "type_and_submit":
        truth["text"] = step.get("text") or "shoes"
    return truth


def _completion(step: dict, truth: dict, rng: random.Random) -> str:
    roll = rng.random()
    predicted = dict(truth)
    if truth["type"] == "type_and_submit" and roll < 0.3:
        words = predicted["text"].split()
        predicted["text"] = " ".join(words[:-1] or words)  # partial: ROUGE-L below 1
    elif roll < 0.4:
        predicted = {"type": "terminate"}  # wrong type (or right, for terminate rows)
    elif roll < 0.45:
        predicted = {"type": "click", "name": "add_to_cart.buy_now"}
    rationale = rng.choice(RATIONALES).format(q=step.get("text") or "something")
    completion = json.dumps({"rationale": rationale, "action": predicted})
    broken = rng.random()
    if broken < 0.03:
        return completion[: len(completion) // 2]  # truncated: not_json
    if broken < 0.05:
        return "Sure! " + completion  # extra text: not_json in strict mode
    if broken < 0.06:
        return completion[:-1] + ', "action": {"type": "terminate"}}'  # duplicate key
    if broken < 0.07:
        return json.dumps({"action": predicted})  # missing_rationale
    return completion


def expected_of(completion: str, truth: dict, config: RewardConfig | None = None) -> Expected:
    """In-process reward of one item: the reference every response is checked against."""
    breakdown = score_completion(completion, parse_ground_truth(truth), config or RewardConfig())
    failure = breakdown.failure
    return Expected(
        reward=breakdown.reward,
        score=breakdown.score,
        components=(breakdown.format, breakdown.type, breakdown.attribute, breakdown.value),
        format_ok=failure is None,
        format_reason=failure.reason if failure else None,
        action=breakdown.parsed.action.as_dict() if breakdown.parsed else None,
    )


def make_cases(count: int, seed: int = 0) -> list[Case]:
    """``count`` distinct-ish cases with their expected rewards (deterministic)."""
    rng = random.Random(seed)
    steps = load_steps()
    cases = []
    for _ in range(count):
        step = rng.choice(steps)
        truth = _truth_of(step)
        completion = _completion(step, truth, rng)
        cases.append(Case(completion, truth, expected_of(completion, truth), _prompt(step)))
    return cases


def check_result(
    result: dict, case: Case, item_id: Any, index: int, *, model: bool = False
) -> str | None:
    """None when ``result`` is exactly what the server owes for ``case``; else why not.

    ``model``: self-certainty came from the served model: it must be present (when the
    format passed) with a reason-free certainty block, and the reward must be
    ``rules + alpha * s``. Otherwise it must be null and the reward the rules total.
    """
    if result.get("id") != item_id or result.get("index") != index:
        return f"reordered: got id {result.get('id')!r} index {result.get('index')} " \
               f"for id {item_id!r} index {index}"
    exp = case.expected
    comps = result["components"]
    got = (comps["format"], comps["type"], comps["attribute"], comps["value"])
    if got != exp.components or result["score"] != exp.score:
        return f"components {got} score {result['score']} != {exp.components} {exp.score}"
    if result["format_ok"] != exp.format_ok:
        return f"format_ok {result['format_ok']} != {exp.format_ok}"
    reason = (result.get("format_error") or {}).get("reason")
    if reason != exp.format_reason:
        return f"format reason {reason!r} != {exp.format_reason!r}"
    action = result.get("action")
    if action is not None:
        action = {k: v for k, v in action.items() if v is not None}
    if action != exp.action:
        return f"action {action} != {exp.action}"
    certainty = comps["self_certainty"]
    if model and exp.format_ok:
        if certainty is None or not math.isfinite(certainty) or not 0 <= certainty < 50:
            return f"model self_certainty missing or out of range: {certainty!r} " \
                   f"({result.get('certainty')})"
        if result["certainty"]["source"] != "model" or result["certainty"]["reason"]:
            return f"certainty block {result['certainty']}"
        want = exp.reward + ALPHA * certainty
        if not math.isclose(result["reward"], want, rel_tol=1e-12, abs_tol=1e-12):
            return f"reward {result['reward']} != rules + alpha*s = {want}"
        return None
    if certainty is not None:
        return f"self_certainty {certainty} where none was asked for"
    if result["reward"] != exp.reward:
        return f"reward {result['reward']} != {exp.reward}"
    return None
