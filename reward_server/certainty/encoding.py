"""From a :class:`CertaintyRequest` to the token ids a forward pass needs (REWARD_CONTRACT.md
§4), shared by every engine: validation, tokenisation, the rationale's token positions.

Every check whose cost does not depend on the model runs first, and every per-item cost is
linear in the request's size and capped by the model context before the work starts:

* given ``prompt_ids`` / ``completion_ids`` are counted against the context before any id
  is looked at, then range-checked (an id outside the vocabulary, ``2**40`` included, is
  ``invalid_request``) before anything is decoded;
* a text longer than the context could hold (``max_positions`` tokens of at most
  ``max_token_chars + 1`` characters each) is ``too_long`` without being tokenised;
* a text that is not valid Unicode (a lone surrogate) is ``invalid_request``;
* given completion ids are decoded token by token (linear), only up to the span's end.

Input that can never succeed is a per-item ``invalid_request`` result, never an exception.
This module imports no torch.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

from reward_contract import CertaintyKind
from reward_server.certainty.spans import (
    encode_with_offsets,
    offsets_by_decoding,
    overlapping_positions,
)
from reward_server.certainty.types import CertaintyRequest, CertaintyResult

KINDS: tuple[str, ...] = get_args(CertaintyKind)

PromptKey = tuple[int, ...]


@dataclass(slots=True)
class EncodedItem:
    """A request after tokenisation: what the forward pass needs and nothing else."""

    prompt_ids: PromptKey
    completion_ids: list[int]
    positions: list[int]  # completion token indices that are scored rationale tokens
    kind: str
    temperature: float

    @property
    def total_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)

    @property
    def forward_tokens(self) -> int:
        """Completion tokens actually fed to the model (up to the last rationale token):
        causality makes the later ones irrelevant to the value."""
        return self.positions[-1] if self.positions else 0


def failure(reason: str, detail: str | None = None, total: int = 0) -> CertaintyResult:
    """A per-item result without a value."""
    return CertaintyResult(value=None, reason=reason, detail=detail, total_tokens=total)


def result_slots_and_prompt_groups(
    items: Sequence[EncodedItem | CertaintyResult],
) -> tuple[list[CertaintyResult | None], dict[PromptKey, list[int]]]:
    """A batch's result slots, already filled for items that failed before the forward
    pass, and the indices of the others grouped by identical prompt ids (in order): the
    groups that share one prompt encoding in a forward pass."""
    results: list[CertaintyResult | None] = [
        it if isinstance(it, CertaintyResult) else None for it in items
    ]
    groups: dict[PromptKey, list[int]] = {}
    for i, it in enumerate(items):
        if isinstance(it, EncodedItem):
            groups.setdefault(it.prompt_ids, []).append(i)
    return results, groups


class _TooLong(Exception):
    def __init__(self, detail: str, total: int) -> None:
        super().__init__(detail)
        self.total = total


def _check_text(field: str, text: object) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{field} must be a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate cannot be tokenised
        raise ValueError(f"{field} is not valid Unicode (character {exc.start})") from None
    return text


def _check_ids(field: str, ids: Sequence[Any], vocab: int) -> list[int]:
    out: list[int] = []
    for i, t in enumerate(ids):
        try:
            value = operator.index(t)  # an int, not a float or a string
        except TypeError:
            raise ValueError(f"{field}[{i}] is not an integer token id") from None
        if not 0 <= value < vocab:
            raise ValueError(f"{field}[{i}] = {value} is outside the model vocabulary [0, {vocab})")
        out.append(value)
    return out


class RequestEncoder:
    """Validates and tokenises requests for one model (its tokenizer, the number of rows
    of its input embedding, its context length)."""

    def __init__(self, tokenizer: Any, input_vocab: int, max_positions: int) -> None:
        self.tokenizer = tokenizer
        self.input_vocab = input_vocab
        self.max_positions = max_positions
        self._max_token_chars: int | None = None

    @property
    def max_text_chars(self) -> int:
        """The longest text that could fit in the context: no token decodes to more than
        the longest vocabulary entry, plus one separator a decoder may insert."""
        if self._max_token_chars is None:
            vocab = self.tokenizer.get_vocab()
            self._max_token_chars = max((len(t) for t in vocab), default=1)
        return self.max_positions * (self._max_token_chars + 1)

    def _tokenise(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _cap_text(self, field: str, length: int) -> None:
        if length > self.max_text_chars:
            raise _TooLong(
                f"{field} has {length} characters, more than a {self.max_positions}-token "
                "context can hold",
                0,
            )

    def _prompt_ids(self, req: CertaintyRequest) -> list[int]:
        if req.prompt_ids is not None:  # its length is checked by the caller, unread
            return _check_ids("prompt_ids", req.prompt_ids, self.input_vocab)
        if req.prompt_messages is not None:
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError("the model's tokenizer has no chat template")
            messages = []
            length = 0
            for i, message in enumerate(req.prompt_messages):
                role, content = message
                _check_text(f"prompt_messages[{i}].role", role)
                length += len(_check_text(f"prompt_messages[{i}].content", content))
                messages.append({"role": role, "content": content})
            self._cap_text("prompt_messages", length)
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return self._tokenise(text)
        if req.prompt_text is not None:
            self._cap_text("prompt_text", len(_check_text("prompt_text", req.prompt_text)))
            # Already templated: its special tokens are in the text, add none.
            return self._tokenise(req.prompt_text)
        return []

    def _completion(
        self, req: CertaintyRequest, end: int, n_prompt: int
    ) -> tuple[list[int], list[tuple[int, int]]] | CertaintyResult:
        """Completion ids and their character spans, or a ``span_mismatch`` result."""
        if req.completion_ids is None:
            self._cap_text("completion_text", len(req.completion_text))
            return encode_with_offsets(self.tokenizer, req.completion_text)
        completion = _check_ids("completion_ids", req.completion_ids, self.input_vocab)
        mismatch = failure(
            "span_mismatch",
            "completion_ids do not decode to completion_text up to the span end",
            n_prompt + len(completion),
        )
        try:
            decoded, offsets = offsets_by_decoding(self.tokenizer, completion, stop_at=end)
        except ValueError:
            return mismatch
        if decoded[:end] != req.completion_text[:end]:
            return mismatch
        return completion, offsets

    def encode(self, req: CertaintyRequest) -> EncodedItem | CertaintyResult:
        """Tokenise one request; a :class:`CertaintyResult` is a per-item failure."""
        try:
            return self._encode(req)
        except _TooLong as exc:
            return failure("too_long", str(exc), exc.total)
        except (ValueError, TypeError) as exc:
            return failure("invalid_request", str(exc))
        except Exception as exc:  # tokenizer internals: report, never a silent 0
            return failure("backend_error", f"tokenisation failed: {type(exc).__name__}: {exc}")

    def _encode(self, req: CertaintyRequest) -> EncodedItem | CertaintyResult:
        if req.kind not in KINDS:
            raise ValueError(f"unknown certainty kind {req.kind!r}")
        temp = float(req.temperature)
        if not (math.isfinite(temp) and temp > 0):
            raise ValueError("temperature must be a finite number > 0")
        _check_text("completion_text", req.completion_text)
        start, end = req.rationale_span
        if not (0 <= start <= end <= len(req.completion_text)):
            raise ValueError(f"rationale_span {req.rationale_span} outside the completion text")
        given = [x is not None for x in (req.prompt_text, req.prompt_messages, req.prompt_ids)]
        if sum(given) > 1:
            raise ValueError("set at most one of prompt_text, prompt_messages, prompt_ids")
        # Both sides given as ids: their count alone decides, before any id is read.
        n_ids = len(req.prompt_ids or ()) + len(req.completion_ids or ())
        if n_ids > self.max_positions:
            raise _TooLong(f"{n_ids} tokens > model context {self.max_positions}", n_ids)
        prompt = self._prompt_ids(req)
        if len(prompt) > self.max_positions:
            raise _TooLong(
                f"{len(prompt)} prompt tokens > model context {self.max_positions}", len(prompt)
            )
        if req.completion_ids is not None and len(prompt) + len(req.completion_ids) > (
            self.max_positions
        ):
            total = len(prompt) + len(req.completion_ids)
            raise _TooLong(f"{total} tokens > model context {self.max_positions}", total)
        # Prompt and completion are tokenised separately: the completion's tokens are the
        # ones the policy generated, not a re-tokenisation across the boundary.
        completion = self._completion(req, end, len(prompt))
        if isinstance(completion, CertaintyResult):
            return completion
        ids, offsets = completion
        total = len(prompt) + len(ids)
        if total > self.max_positions:
            raise _TooLong(f"{total} tokens > model context {self.max_positions}", total)
        positions = overlapping_positions(offsets, (start, end))
        if not prompt:
            positions = [p for p in positions if p > 0]  # token 0 has no predicting row
        if not positions:
            return failure("empty_span", "no completion token overlaps the rationale", total)
        return EncodedItem(tuple(prompt), ids, positions, req.kind, temp)
