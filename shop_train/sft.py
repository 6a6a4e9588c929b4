"""Supervised fine-tuning on the task's train split (TRL ``SFTTrainer``).

Each example is the prompt (system and user turns) and, as the assistant's turn, the
shopper's real action with a rationale (:func:`shop_train.rationales.sft_target`); the
loss is on the answer only (prompt-completion rows). LoRA adapters, when chosen, are
merged into the saved model so every later stage loads a plain model directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shop_task import TaskRow
from shop_train.policy import bf16_supported, sample_rows
from shop_train.rationales import RationaleKey, sft_target


@dataclass(frozen=True)
class SFTSettings:
    epochs: float = 1.0
    max_rows: int | None = None
    batch_size: int = 8
    learning_rate: float = 5e-5
    lora: bool = False
    lora_rank: int = 16
    max_length: int = 1024
    seed: int = 0
    device: str = "cpu"


def sft_rows(
    rows: Sequence[TaskRow], rationales: Mapping[RationaleKey, str] | None = None
) -> list[dict[str, Any]]:
    """Conversational prompt-completion rows for ``SFTTrainer``."""
    return [
        {
            "prompt": row.messages,
            "completion": [{"role": "assistant", "content": sft_target(row, rationales)}],
        }
        for row in rows
    ]


def lora_config(rank: int) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"],
    )


def save_policy(trainer: Any, tokenizer: Any, out_dir: Path) -> None:
    """The trained model as a plain directory (LoRA merged), its tokenizer and its log."""
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / "training_log.json").write_text(
        json.dumps(trainer.state.log_history, indent=1), encoding="utf-8"
    )


def run_sft(
    policy: str | Path,
    out_dir: str | Path,
    rows: Sequence[TaskRow],
    settings: SFTSettings,
    rationales: Mapping[RationaleKey, str] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``policy`` on ``rows``; the model lands in ``out_dir``. Returns the run's
    summary (settings, rows, seconds, final loss)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    out = Path(out_dir)
    chosen = sample_rows(rows, settings.max_rows, settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(policy))
    config = SFTConfig(
        output_dir=str(out / "trainer"),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        max_length=settings.max_length,
        bf16=bf16_supported(settings.device),
        use_cpu=settings.device == "cpu",
        seed=settings.seed,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=str(policy),
        args=config,
        train_dataset=Dataset.from_list(sft_rows(chosen, rationales)),
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora_rank) if settings.lora else None,
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    save_policy(trainer, tokenizer, out)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "stage": "sft", "policy": str(policy), "rows": len(chosen), "seconds": seconds,
        "final_loss": losses[-1] if losses else None, "settings": asdict(settings),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
