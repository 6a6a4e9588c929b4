"""Recorded shopping steps: one JSON object a line, read with every bad line reported.

A step is what a real shopper did next on a shopping site (``kind`` ``click``,
``type_and_submit`` or ``terminate``, the element's ``name``, the typed ``text``), with
the episode it belongs to (``episode_id``, ``step``), the ``site``, the shopper's goal
(``context_hint``) and the actions taken before it (``history``). The format is the one of
``data/shopping-steps/mind2web_shopping_steps.jsonl`` (its README gives the provenance).

A line that is not a JSON object, or a step without a target (an unknown ``kind``, a
``click`` or ``type_and_submit`` with an empty ``name``, a ``type_and_submit`` with an
empty ``text``, no ``episode_id``), is skipped and reported with its line number: nothing
is dropped silently. A ``name`` or ``text`` without a single letter or digit (an icon glyph
such as ``"\uf002"``, a bare ``"$"``) is no target either: ROUGE-L reads no token in it
(REWARD_CONTRACT.md §3), so no answer could ever earn its similarity credit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from reward_contract import ACTION_TYPES

# The copy of the Mind2Web shopping steps that ships with the repository.
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "shopping-steps"
DEFAULT_STEPS_PATH = DATA_DIR / "mind2web_shopping_steps.jsonl"


# What ROUGE-L keeps of a text once lower-cased (REWARD_CONTRACT.md §3).
_ROUGE_TOKEN_CHAR = re.compile(r"[a-z0-9]")


_TARGET_FIELDS = {"click": ("name",), "type_and_submit": ("name", "text"), "terminate": ()}


def _has_token(value: str) -> bool:
    return _ROUGE_TOKEN_CHAR.search(value.lower()) is not None


@dataclass(frozen=True, slots=True)
class ShoppingStep:
    """One recorded action of a shopper (``name`` and ``text`` are empty where the kind
    has none)."""

    line_number: int
    episode_id: str
    step: int
    site: str
    goal: str
    kind: str
    name: str
    text: str
    role: str
    history: tuple[str, ...]

    def action(self) -> dict[str, str]:
        """The step as a Shop-R1 action (REWARD_CONTRACT.md §1)."""
        if self.kind == "terminate":
            return {"type": "terminate"}
        if self.kind == "click":
            return {"type": "click", "name": self.name}
        return {"type": "type_and_submit", "name": self.name, "text": self.text}


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A line that became no step, and why."""

    line_number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.reason}"


@dataclass(frozen=True, slots=True)
class LoadedSteps:
    steps: tuple[ShoppingStep, ...]
    skipped: tuple[SkippedLine, ...]


def load_steps(path: str | Path = DEFAULT_STEPS_PATH) -> LoadedSteps:
    """Every usable step of the JSONL file at ``path``, in file order, and every skipped
    line with its 1-based number and reason."""
    steps: list[ShoppingStep] = []
    skipped: list[SkippedLine] = []
    with open(path, encoding="utf-8") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            step_or_reason = parse_step(line, number)
            if isinstance(step_or_reason, str):
                skipped.append(SkippedLine(number, step_or_reason))
            else:
                steps.append(step_or_reason)
    return LoadedSteps(tuple(steps), tuple(skipped))


def parse_step(line: str, number: int) -> ShoppingStep | str:
    """The step on one line, or the reason it is not one."""
    try:
        record = json.loads(line)
    except ValueError as error:
        return f"not JSON ({error.msg})"
    if not isinstance(record, dict):
        return "not a JSON object"
    kind = record.get("kind")
    if kind not in ACTION_TYPES:
        return f"kind must be one of {', '.join(ACTION_TYPES)}, got {kind!r}"
    fields = {key: record.get(key, "") for key in ("episode_id", "site", "context_hint")}
    fields.update(name=record.get("name", ""), text=record.get("text", ""))
    for key, value in fields.items():
        if not isinstance(value, str):
            return f"{key} must be a string"
    if not fields["episode_id"].strip():
        return "no episode_id"
    if kind != "terminate" and not fields["name"].strip():
        return f"a {kind} step without a target: empty name"
    if kind == "type_and_submit" and not fields["text"].strip():
        return "a type_and_submit step without text"
    for key in _TARGET_FIELDS[kind]:
        if not _has_token(fields[key]):
            return f"a {kind} target whose {key} {fields[key]!r} has no letter or digit"
    history = record.get("history") or []
    step = record.get("step")
    if not isinstance(history, list) or not all(isinstance(item, str) for item in history):
        return "history must be a list of strings"
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return "step must be a non-negative integer"
    role = record.get("element_role") or ""
    return ShoppingStep(
        line_number=number,
        episode_id=fields["episode_id"],
        step=step,
        site=fields["site"] or "unknown",
        goal=fields["context_hint"],
        kind=kind,
        name=fields["name"] if kind != "terminate" else "",
        text=fields["text"] if kind == "type_and_submit" else "",
        role=role if isinstance(role, str) else "",
        history=tuple(history),
    )
