"""The rationale of each SFT target: the user's own, or a short stand-in.

The paper's SFT rationales were written by a strong LLM; the recorded steps have none. A
user brings theirs as JSON lines ``{"episode_id", "step", "rationale"}``. Otherwise
:func:`stand_in_rationale` writes one first-person sentence from the goal and the action,
e.g. ``I want to browse for wall art. I click "Wall Art".``: a placeholder that gives the
policy the answer's shape, with no claim to the paper's quality.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from shop_task import TaskRow

RationaleKey = tuple[str, int]


def stand_in_rationale(row: TaskRow) -> str:
    """One first-person sentence from ``row``'s goal and real action."""
    goal = row.goal.strip().rstrip(".")
    intent = f"I want to {goal[:1].lower()}{goal[1:]}." if goal else "I am shopping."
    action = row.ground_truth
    if action["type"] == "click":
        return f'{intent} I click "{action["name"]}".'
    if action["type"] == "type_and_submit":
        return f'{intent} I type "{action["text"]}" into "{action["name"]}".'
    return f"{intent} I have seen what I need here, so I leave."


def load_rationales(path: str | Path) -> dict[RationaleKey, str]:
    """The user's rationales by ``(episode_id, step)``; a bad line raises, naming it."""
    found: dict[RationaleKey, str] = {}
    with open(path, encoding="utf-8") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (record["episode_id"], record["step"])
                rationale = record["rationale"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(
                    f"{path}: line {number}: need a JSON object with episode_id, step and "
                    f"rationale ({error})"
                ) from error
            if not isinstance(rationale, str) or not rationale.strip():
                raise ValueError(f"{path}: line {number}: rationale must be a non-empty string")
            if not isinstance(key[0], str) or not isinstance(key[1], int):
                raise ValueError(f"{path}: line {number}: episode_id must be a string, step an int")
            found[key] = rationale
    return found


def sft_target(row: TaskRow, rationales: Mapping[RationaleKey, str] | None = None) -> str:
    """The answer SFT teaches for ``row``: ``{"rationale", "action"}`` as one JSON object."""
    rationale = (rationales or {}).get((row.episode_id, row.step)) or stand_in_rationale(row)
    return json.dumps({"rationale": rationale, "action": row.ground_truth}, ensure_ascii=False)
