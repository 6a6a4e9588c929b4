"""Dataset rows for Shop-R1 training, shared by the trainer examples.

Turns shopping-step records (``{"kind", "name", "text", "context_hint", "history"}`` a
line, e.g. ``data/shopping-steps/mind2web_shopping_steps.jsonl``) into the row
every adapter expects::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "ground_truth": "{\"type\": \"click\", \"name\": \"Wall Art\"}"}

``ground_truth`` is the shopper's real next action as a JSON string (REWARD_CONTRACT.md §1); the
prompt asks for one JSON object ``{"rationale": ..., "action": {...}}``.
Run ``python examples/shop_rows.py IN.jsonl OUT.jsonl`` to write rows as JSON lines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SYSTEM = (
    "You are simulating a real online shopper. Given the shopping goal and the actions taken "
    "so far, answer with ONE JSON object and nothing else: "
    '{"rationale": "<why, first person>", "action": {"type": "click", "name": "<element>"}} '
    'or {"type": "type_and_submit", "name": "<input>", "text": "<query>"} or {"type": "terminate"}.'
)


def ground_truth(record: dict[str, Any]) -> dict[str, str]:
    kind = record["kind"]
    if kind == "terminate":
        return {"type": "terminate"}
    if kind == "click":
        return {"type": "click", "name": record["name"]}
    return {"type": "type_and_submit", "name": record["name"], "text": record["text"]}


def row(record: dict[str, Any]) -> dict[str, Any]:
    history = "\n".join(record.get("history") or []) or "(none)"
    user = f"Goal: {record.get('context_hint', '')}\nActions so far:\n{history}\nNext action?"
    return {
        "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        "ground_truth": json.dumps(ground_truth(record)),
    }


def read_rows(path: str | Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as source:
        for count, line in enumerate(source):
            if limit is not None and count >= limit:
                return
            if line.strip():
                yield row(json.loads(line))


if __name__ == "__main__":
    with open(sys.argv[2], "w", encoding="utf-8") as sink:
        for item in read_rows(sys.argv[1]):
            sink.write(json.dumps(item) + "\n")
