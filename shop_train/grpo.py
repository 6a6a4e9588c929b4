"""GRPO on the reward service (TRL ``GRPOTrainer`` with ``trainer_adapter.trl``).

The paper's settings are the defaults: sampling temperature 0.6, KL coefficient (beta)
0.001, and the reward profile's alpha 0.005 and DARS 1000. Rewards come from a running
service (``--reward-url``), with the reward profile of every request (``paper``,
``binary``, ``no_format``, ``no_self_certainty``, ``no_dars``).

Self-certainty, the policy's own signal, comes from one of:

* ``policy`` (default): computed here from the policy being trained
  (:class:`shop_train.policy_certainty.PolicyCertainty`) and sent as ``provided``: always
  the current weights, no checkpoint traffic;
* ``service``: the service's model, reloaded from the policy's checkpoint every
  ``reload_every`` steps (``POST /v1/reload``; the service needs ``--reload-root`` and an
  API key); values come from weights up to that many steps old;
* ``none``: no self-certainty.

A profile whose alpha is 0 (``binary``, ``no_self_certainty``) computes none.
``policy`` is the default although ``bench/bench_certainty_source.py`` measured it dearer
on a CPU (1.51x a step without self-certainty, against 0.97x plus 1.9 s per reload for
``service``; docs/RESULTS.md): it is always the sampling weights' value, and it needs no
model, reload key or shared filesystem on the service's side.
Every step logs, through the adapter, the reward, each component (``shop_r1/<component>``),
the share of well-formed answers (``shop_r1/format_ok``) and of ``terminate`` predictions
(``shop_r1/terminate_share``), all from the service's own reading of the answers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from reward_server.config import PROFILES
from shop_task import TaskRow
from shop_task.rows import chat_row
from shop_train.policy import bf16_supported, sample_rows
from shop_train.policy_certainty import PolicyCertainty
from trainer_adapter._settings import text_of
from trainer_adapter.trl import shop_r1_reward

CertaintyFrom = Literal["policy", "service", "none"]
PREFIX = "shop_r1/"


@dataclass(frozen=True)
class GRPOSettings:
    steps: int = 20
    prompts_per_step: int = 2
    group_size: int = 4
    learning_rate: float = 1e-5
    temperature: float = 0.6
    beta: float = 0.001
    max_completion_length: int = 96
    profile: str = "paper"
    certainty: CertaintyFrom = "policy"
    reload_every: int = 5
    lora: bool = False
    lora_rank: int = 16
    max_rows: int | None = None
    seed: int = 0
    device: str = "cpu"


def make_reward_function(certainty: PolicyCertainty | None) -> Any:
    """TRL reward function: :func:`trainer_adapter.trl.shop_r1_reward`, with the policy's
    self-certainty attached when ``certainty`` is given."""

    async def shop_r1(
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] = (),
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if certainty is not None:
            if prompts is None:
                raise ValueError("the policy's self-certainty needs the prompts")
            texts = [text_of(completion) for completion in completions]
            kwargs["self_certainty"] = certainty(prompts, texts)
        return await shop_r1_reward(prompts, completions, completion_ids, **kwargs)

    return shop_r1


def adapter_environment(
    reward_url: str, settings: GRPOSettings, api_key: str | None
) -> dict[str, str]:
    """The ``SHOP_R1_*`` variables the TRL adapter reads (it is configured like any
    trainer's)."""
    source = {"policy": "provided", "service": "model", "none": "none"}[settings.certainty]
    if PROFILES[settings.profile].alpha == 0:
        source = "none"
    env = {
        "SHOP_R1_REWARD_URL": reward_url,
        "SHOP_R1_REWARD_PROFILE": settings.profile,
        "SHOP_R1_SELF_CERTAINTY_SOURCE": source,
        "SHOP_R1_REWARD_CONFIG": json.dumps({"temperature": settings.temperature}),
    }
    if api_key:
        env["SHOP_R1_API_KEY"] = api_key
    return env


def reload_callback(reward_url: str, api_key: str | None, every: int, folder: Path) -> Any:
    """A ``TrainerCallback`` that saves the policy every ``every`` steps and has the
    service reload its scoring weights from it."""
    import httpx
    from transformers import TrainerCallback

    class ReloadService(TrainerCallback):
        def __init__(self) -> None:
            self.seconds = 0.0
            self.reloads = 0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step % every:
                return
            started = time.perf_counter()
            target = folder / f"step-{state.global_step}"
            model = kwargs["model"]
            if hasattr(model, "merge_and_unload"):  # LoRA: save the merged weights
                model = model.merge_and_unload(safe_merge=True, progressbar=False)
            model.save_pretrained(str(target))
            kwargs["processing_class"].save_pretrained(str(target))
            headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
            response = httpx.post(
                f"{reward_url}/v1/reload", json={"model_dir": str(target)},
                headers=headers, timeout=300,
            )
            response.raise_for_status()
            self.seconds += time.perf_counter() - started
            self.reloads += 1

    return ReloadService()


def run_grpo(
    policy: str | Path,
    out_dir: str | Path,
    rows: Sequence[TaskRow],
    reward_url: str,
    settings: GRPOSettings,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Train ``policy`` with GRPO on ``rows`` against the service at ``reward_url``; the
    model lands in ``out_dir``. Returns the run's summary, per-step log included."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from shop_train.sft import lora_config, save_policy

    if settings.profile not in PROFILES:
        raise ValueError(f"unknown profile {settings.profile!r}; known: {sorted(PROFILES)}")
    out = Path(out_dir)
    os.environ.update(adapter_environment(reward_url, settings, api_key))
    chosen = sample_rows(rows, settings.max_rows, settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(policy))
    uses_certainty = PROFILES[settings.profile].alpha > 0
    certainty = (
        PolicyCertainty(tokenizer, settings.temperature, bf16=bf16_supported(settings.device))
        if uses_certainty and settings.certainty == "policy" else None
    )
    config = GRPOConfig(
        output_dir=str(out / "trainer"),
        max_steps=settings.steps,
        per_device_train_batch_size=settings.prompts_per_step * settings.group_size,
        num_generations=settings.group_size,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=bf16_supported(settings.device),
        use_cpu=settings.device == "cpu",
        seed=settings.seed,
        log_completions=False,
    )
    callbacks = []
    if uses_certainty and settings.certainty == "service":
        reload_dir = out / "reload"
        callbacks.append(reload_callback(reward_url, api_key, settings.reload_every, reload_dir))
    trainer = GRPOTrainer(
        model=str(policy),
        reward_funcs=[make_reward_function(certainty)],
        args=config,
        train_dataset=Dataset.from_list([chat_row(row) for row in chosen]),
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora_rank) if settings.lora else None,
        callbacks=callbacks,
    )
    if certainty is not None:
        certainty.model = trainer.model
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    save_policy(trainer, tokenizer, out)
    summary = {
        "stage": "grpo", "policy": str(policy), "rows": len(chosen), "seconds": seconds,
        "settings": asdict(settings), "steps": step_log(trainer.state.log_history),
    }
    if callbacks:
        summary["reload_seconds"] = callbacks[0].seconds
        summary["reloads"] = callbacks[0].reloads
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def step_log(history: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """One entry per logged GRPO step: the reward, the ``shop_r1/*`` statistics the adapter
    logs (``terminate_share`` among them), the format-failure rate (``1 - format_ok``) and
    the step's seconds."""
    steps = []
    for entry in history:
        if "reward" not in entry or "step" not in entry:
            continue
        keep = {"step": entry["step"], "reward": entry["reward"]}
        if "step_time" in entry:
            keep["step_time"] = entry["step_time"]
        keep.update({k[len(PREFIX):]: v for k, v in entry.items() if k.startswith(PREFIX)})
        if "format_ok" in keep:
            keep["format_failure"] = 1 - keep["format_ok"]
        steps.append(keep)
    return steps
