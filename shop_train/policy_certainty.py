"""Self-certainty from the policy being trained (REWARD_CONTRACT.md §4), to send to the
service as ``self_certainty_source="provided"``.

The paper rewards a rationale by the *policy's own* confidence. The policy is here, in the
trainer's process, so its value costs one extra forward pass over ``prompt + completion``
per completion (no gradient), and it is always the current policy's. The alternative, the
service's model reloaded from a checkpoint every N steps (``/v1/reload``), costs the same
forward in the service plus a checkpoint written and loaded each time, and scores with
weights up to N steps old (``bench/bench_certainty_source.py`` measures both).

For completion ``c`` of prompt ``p`` (the chat template's tokens), with ``P`` prompt
tokens, the rows ``logits[P - 1 : -1]`` produced the completion's tokens; the rationale
tokens are those overlapping the rationale's characters (``rationale_char_span``), and
``s = mean_t KL(U || softmax(z_t / T))`` over them (:func:`trainer_adapter.certainty.
self_certainty`). A completion without a rationale span (a format failure) gets None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reward_contract import CertaintyKind
from trainer_adapter.certainty import rationale_char_span, rationale_token_mask, self_certainty


class PolicyCertainty:
    """Computes each completion's self-certainty with ``model`` (set once the trainer has
    built it: :attr:`model`)."""

    def __init__(
        self,
        tokenizer: Any,
        temperature: float,
        kind: CertaintyKind = "kl_uniform",
        batch_size: int = 4,
        bf16: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.kind = kind
        self.batch_size = batch_size
        self.bf16 = bf16
        self.model: Any = None

    def __call__(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[float | None]:
        if self.model is None:
            raise RuntimeError("PolicyCertainty.model is not set: bind the policy first")
        encoded = [self._encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        values: list[float | None] = [None] * len(encoded)
        todo = [i for i, item in enumerate(encoded) if item is not None]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for index, value in zip(chunk, self._values([encoded[i] for i in chunk]), strict=True):
                values[index] = value
        return values

    def _encode(self, prompt: Any, completion: str) -> tuple[list[int], list[bool]] | None:
        span = rationale_char_span(completion)
        if span is None:
            return None
        if isinstance(prompt, str):
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        else:
            prompt_ids = self.tokenizer.apply_chat_template(
                list(prompt), add_generation_prompt=True, tokenize=True, return_dict=False
            )
        encoding = self.tokenizer(
            completion, add_special_tokens=False, return_offsets_mapping=True
        )
        mask = rationale_token_mask(encoding["offset_mapping"], span)
        if not any(mask):
            return None
        ids = list(prompt_ids) + list(encoding["input_ids"])
        return ids, [False] * len(prompt_ids) + list(mask)

    def _values(self, items: list[Any]) -> list[float | None]:
        import torch

        width = max(len(ids) for ids, _ in items)
        pad = self.tokenizer.pad_token_id or 0
        device = next(self.model.parameters()).device
        input_ids = torch.full((len(items), width), pad, dtype=torch.long)
        attention = torch.zeros((len(items), width), dtype=torch.long)
        # mask[t] marks the token at t; the row that predicted it is t - 1.
        rows = torch.zeros((len(items), width), dtype=torch.bool)
        for row, (ids, mask) in enumerate(items):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            rows[row, : len(ids) - 1] = torch.tensor(mask[1:])
        # The trainer's own mixed precision: logits in bf16 where training runs in it; the
        # reduction itself is float32 (self_certainty).
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)
        with torch.no_grad(), autocast:
            logits = self.model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device)
            ).logits
            result = self_certainty(
                logits, rows.to(device), temperature=self.temperature, kind=self.kind
            )
        return [None if value != value else float(value) for value in result.tolist()]
