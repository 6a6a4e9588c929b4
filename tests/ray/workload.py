"""GRPO-shaped traffic from the real shopping steps: prompts with several completions each.

A group is one shopping step (``data/shopping-steps``) turned into the chat prompt every
trainer example sends (the task builder's rows, ``shop_task``) and ``size`` sampled
completions of it:
the exact next action, a partial one, a wrong type, a different rationale, and now and
then a malformed answer, as a policy produces them. Items carry ids ``"g{group}-{k}"``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from shop_task import build_task
from shop_task.rows import chat_row
from tests.reliability.workload import RATIONALES


def _completion(truth: dict[str, Any], rng: random.Random) -> str:
    predicted = dict(truth)
    roll = rng.random()
    if truth["type"] == "type_and_submit" and roll < 0.35:
        words = predicted["text"].split()
        predicted["text"] = " ".join(words[: max(1, len(words) - 1)])
    elif roll < 0.45:
        predicted = {"type": "terminate"}
    elif roll < 0.5:
        predicted = {"type": "click", "name": "add_to_cart.buy_now"}
    rationale = rng.choice(RATIONALES).format(q=truth.get("text") or "something")
    completion = json.dumps({"rationale": rationale, "action": predicted})
    if rng.random() < 0.05:
        return completion[: len(completion) // 2]  # truncated: a format failure
    return completion


def _task_rows() -> list:
    task = build_task()
    return [*task.train, *task.test]


def grpo_groups(groups: int, size: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    """``groups`` lists of ``size`` request items (same prompt within a list)."""
    rng = random.Random(seed)
    rows = _task_rows()
    out = []
    for g, task_row in enumerate(rng.sample(rows, groups)):
        shop_row = chat_row(task_row)
        truth = task_row.ground_truth
        out.append([
            {
                "id": f"g{g}-{k}",
                "prompt": shop_row["prompt"],
                "completion": _completion(truth, rng),
                "ground_truth": truth,
            }
            for k in range(size)
        ])
    return out


def rules_items(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` single items (no prompt) over distinct shopping steps."""
    rng = random.Random(seed)
    items = []
    for i, task_row in enumerate(rng.sample(_task_rows(), count)):
        truth = task_row.ground_truth
        items.append({"id": i, "completion": _completion(truth, rng), "ground_truth": truth})
    return items


def without_timings(body: dict[str, Any]) -> dict[str, Any]:
    """A response body minus its timings (the only field that may differ between runs)."""
    return {k: v for k, v in body.items() if k != "timings"}


def save_tiny_model(directory: Path, seed: int = 1) -> Path:
    """A 2-layer random Llama and its byte-level tokenizer saved as a model folder: the
    real transformers backend runs it in milliseconds, so the model path is exercised
    end to end at the cost of a forward pass of a few thousand parameters."""
    from tests.certainty.certainty_helpers import make_tiny_model, make_tokenizer

    tokenizer = make_tokenizer()
    # Byte-level tokens of the shopping prompts run to ~600: room for the longest.
    model = make_tiny_model(seed, vocab_size=len(tokenizer) + 13, max_positions=4096)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
