"""Write verl parquet files from shopping-step records.

python examples/verl/prepare_data.py \
    data/shopping-steps/mind2web_shopping_steps.jsonl ~/shop_r1
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # examples/
from shop_rows import read_rows


def verl_row(row: dict, index: int, split: str) -> dict:
    return {
        "data_source": "shop_r1",
        "prompt": row["prompt"],
        "ability": "web_shopping",
        "reward_model": {"style": "rule", "ground_truth": row["ground_truth"]},
        "extra_info": {"index": index, "split": split, "prompt": row["prompt"]},
    }


def main(source: str, out_dir: str, test_fraction: float = 0.1) -> None:
    from datasets import Dataset

    rows = list(read_rows(source))
    cut = int(len(rows) * (1 - test_fraction))
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for split, part in (("train", rows[:cut]), ("test", rows[cut:])):
        data = [verl_row(row, i, split) for i, row in enumerate(part)]
        Dataset.from_list(data).to_parquet(str(out / f"{split}.parquet"))
        print(f"{split}: {len(data)} rows -> {out / f'{split}.parquet'}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
