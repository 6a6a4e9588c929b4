"""Every trainer's row format, from one :class:`~shop_task.builder.TaskRow`.

* TRL, OpenRLHF and slime read JSON lines ``{"prompt": [chat messages], "ground_truth":
  "<action JSON>"}`` (OpenRLHF: ``--data.input_key prompt --data.label_key ground_truth``;
  slime: ``--input-key prompt --label-key ground_truth``; TRL passes ``ground_truth`` to
  the reward function as a keyword);
* verl reads parquet rows ``{"data_source", "prompt", "ability", "reward_model":
  {"style": "rule", "ground_truth"}, "extra_info": {"index", "split", "prompt"}}``
  (writing parquet needs ``pyarrow``; nothing else here does).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shop_task.builder import ShopTask, TaskRow

FORMATS = ("trl", "openrlhf", "slime", "verl")


def chat_row(row: TaskRow) -> dict[str, Any]:
    """``{"prompt": messages, "ground_truth": action JSON}``."""
    return {"prompt": row.messages, "ground_truth": row.ground_truth_json}


trl_row = openrlhf_row = slime_row = chat_row


def verl_row(chat: dict[str, Any], index: int, split: str) -> dict[str, Any]:
    """verl's rule-reward row from a :func:`chat_row`; ``extra_info.prompt`` lets the
    reward see the prompt."""
    return {
        "data_source": "shop_r1",
        "prompt": chat["prompt"],
        "ability": "web_shopping",
        "reward_model": {"style": "rule", "ground_truth": chat["ground_truth"]},
        "extra_info": {"index": index, "split": split, "prompt": chat["prompt"]},
    }


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as sink:
        for item in rows:
            sink.write(json.dumps(item, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_parquet(rows: Iterable[dict[str, Any]], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(list(rows))
    pq.write_table(table, path)
    return table.num_rows


def write_format(task: ShopTask, fmt: str, out_dir: str | Path) -> dict[str, Path]:
    """Write the train and test splits of ``task`` in ``fmt`` under ``out_dir/fmt``;
    returns each split's file."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    folder = Path(out_dir) / fmt
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "test"):
        rows = task.split(split)
        if fmt == "verl":
            path = folder / f"{split}.parquet"
            write_parquet(
                (verl_row(chat_row(row), i, split) for i, row in enumerate(rows)), path
            )
        else:
            path = folder / f"{split}.jsonl"
            write_jsonl(map(chat_row, rows), path)
        written[split] = path
    return written
