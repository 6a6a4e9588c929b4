"""Prompt rows and policy answers for the trainer tests, from the committed Mind2Web
shopping steps (``data/shopping-steps``) through the examples' own row builder."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

from shop_task import TaskOptions
from tests.conftest import DATA, REPO

STEPS = DATA / "mind2web_shopping_steps.jsonl"
# A page long enough that a prompt carrying it is cut from the left by the trainer.
LONG_PAGE = "".join(
    f'<li><a name="result_{i}">Lamp model {i} - $ {10 + i}.99</a></li>' for i in range(8)
)


# The task's prompts with the latest action and two distractors: at most ~310 tokens, so
# that only the rows given LONG_PAGE exceed the trainer tests' 320-token prompt budget.
COMPACT = TaskOptions(history="latest", distractors=2)


def _shop_rows():
    spec = importlib.util.spec_from_file_location("shop_rows", REPO / "examples" / "shop_rows.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def rows(count: int, long_every: int = 0) -> list[dict[str, Any]]:
    """``count`` dataset rows (``prompt`` chat messages, ``ground_truth`` JSON string); every
    ``long_every``-th one carries a long page, and each user turn ends with its row number
    so that no two prompts end alike."""
    shop_rows = _shop_rows()
    out = []
    for index, row in enumerate(shop_rows.read_rows(STEPS, count, options=COMPACT)):
        user = row["prompt"][-1]["content"]
        if long_every and index % long_every == 0:
            user = f"Page: <ul>{LONG_PAGE}</ul>\n{user}"
        row["prompt"][-1] = {"role": "user", "content": f"{user} (step {index})"}
        out.append(row)
    return out


def answers(ground_truth: str, count: int) -> list[str]:
    """``count`` policy answers to one row: right, partly right, wrong and malformed."""
    truth = json.loads(ground_truth)
    wrong = (
        {"type": "terminate"} if truth["type"] != "terminate" else {"type": "click", "name": "Cart"}
    )
    near = dict(truth)
    if "name" in near:
        near["name"] = near["name"] + " now"
    kinds = [
        json.dumps({"rationale": "This is exactly what I came for.", "action": truth}),
        "I would click the first result.",  # no JSON: a format failure
        json.dumps({"rationale": "Close enough, I think.", "action": near}),
        json.dumps({"action": truth}),  # no rationale: a format failure
        json.dumps({"rationale": "Nothing here for me, I leave.", "action": wrong}),
        "```json\n" + json.dumps({"rationale": "Fenced.", "action": truth}) + "\n```",
    ]
    return [kinds[i % len(kinds)] for i in range(count)]
