"""Self-certainty terms both sides of the wire use (REWARD_CONTRACT.md §4), in pure Python.

For each rationale token ``t`` with logits row ``z_t`` (the row that predicted it),
temperature ``T``, ``p_t = softmax(z_t / T)`` and row width ``V``, a completion's value is
the mean over its rationale tokens of

* ``kl_uniform`` (default) = KL(U || p_t) = ``logsumexp(z_t/T) - mean(z_t/T) - log V``
* ``kl_to_uniform``        = KL(p_t || U) = ``log V - H(p_t)``

The row reductions run over tensors, so they live with torch: the service's in
``reward_server.certainty.reductions``, the trainers' in ``trainer_adapter.certainty``.
What is decided without tensors lives here: the kinds, which characters are the rationale
(:func:`rationale_char_span`), which tokens are its tokens (:func:`rationale_token_mask`)
and when a value is labelled approximate (:func:`approximate_reason`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal, get_args

from reward_contract import CertaintyKind

__all__ = [
    "APPROXIMATE_DETAILS",
    "CERTAINTY_KINDS",
    "ApproximateReason",
    "approximate_reason",
    "overlapping_positions",
    "rationale_char_span",
    "rationale_token_mask",
]

CERTAINTY_KINDS: tuple[CertaintyKind, ...] = get_args(CertaintyKind)

# A value not computed as §4 defines it, and why: the model saw the completion without its
# prompt, or only the end of a prompt the trainer cut from the left.
ApproximateReason = Literal["no_prompt", "prompt_truncated"]
APPROXIMATE_DETAILS: dict[ApproximateReason, str] = {
    "no_prompt": "computed on the completion alone: send the item's prompt for the exact value",
    "prompt_truncated": (
        "computed with the end of the prompt only: the trainer cut the prompt from the left "
        "to fit its length budget"
    ),
}


def approximate_reason(
    value: float | None, source: str, *, prompt_sent: bool, prompt_cut: bool = False
) -> ApproximateReason | None:
    """Why a self-certainty ``value`` is approximate, or None when it is exact or absent.

    Only a value the service's model computed (``source == "model"``) can be approximate:
    §4 defines it over the prompt and the completion, so it is ``no_prompt`` when the item
    came without a prompt and ``prompt_truncated`` when the trainer sent only the prompt's
    end. A trainer's own value (``provided``) is passed through as sent.

    >>> approximate_reason(1.5, "model", prompt_sent=False)
    'no_prompt'
    >>> approximate_reason(1.5, "model", prompt_sent=True, prompt_cut=True)
    'prompt_truncated'
    >>> approximate_reason(None, "model", prompt_sent=False) is None
    True
    """
    if value is None or source != "model":
        return None
    if not prompt_sent:
        return "no_prompt"
    return "prompt_truncated" if prompt_cut else None


_decoder = json.JSONDecoder()


def rationale_char_span(completion: str) -> tuple[int, int] | None:
    """``(start, end)`` character span of the rationale's string value (between its quotes,
    escapes included) in a completion that is one JSON object, else None.

    Walks the top-level members once with the standard library's JSON scanner (linear in
    the completion) and stops at the ``rationale`` member; the rest of the object is not
    validated (the service's parser does that before it scores).

    >>> rationale_char_span('{"rationale": "I search", "action": {"type": "terminate"}}')
    (15, 23)
    """
    text = completion
    index = len(text) - len(text.lstrip())
    if index >= len(text) or text[index] != "{":
        return None
    index += 1
    try:
        while True:
            index = _skip_space(text, index)
            if text[index] != '"':
                return None  # "}" (no rationale member) or not a key
            key, index = json.decoder.scanstring(text, index + 1)
            index = _skip_space(text, index)
            if text[index] != ":":
                return None
            index = _skip_space(text, index + 1)
            if key == "rationale" and text[index] == '"':
                _, end = json.decoder.scanstring(text, index + 1)
                return index + 1, end - 1
            _, index = _decoder.raw_decode(text, index)
            index = _skip_space(text, index)
            if text[index] != ",":
                return None  # "}" (no rationale member) or a malformed object
            index += 1
    except (IndexError, ValueError):
        return None


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def rationale_token_mask(
    offsets: Sequence[tuple[int, int]], span: tuple[int, int] | None
) -> list[bool]:
    """For each token's character span ``[a, b)``, whether it is a rationale token: it
    overlaps the rationale's span ``[start, end)``, ``a < end and b > start``. A zero-width
    token, an empty span and no span (None) select nothing.

    >>> rationale_token_mask([(0, 15), (15, 16), (16, 23), (23, 23), (23, 26)], (15, 23))
    [False, True, True, False, False]
    """
    if span is None or span[1] <= span[0]:
        return [False] * len(offsets)
    start, end = span
    return [b > a and a < end and b > start for a, b in offsets]


def overlapping_positions(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Indices of the rationale tokens (:func:`rationale_token_mask`) among ``offsets``."""
    return [i for i, inside in enumerate(rationale_token_mask(offsets, span)) if inside]
