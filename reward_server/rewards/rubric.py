"""Composition of the components into the total reward and the [0, 1] score
(REWARD_CONTRACT.md §5)::

    reward = 0                                                   if the format fails
    reward = format + type + attribute + value + alpha * s        otherwise
    score  = (format + type + attribute + value) / best(gt.type)  (0 if the format fails)

``alpha * s`` is omitted when ``s`` is None (self-certainty not requested or not computed).

>>> from reward_server.config import RewardConfig
>>> from reward_server.rewards.types import Action
>>> text = '{"rationale": "Done.", "action": {"type": "terminate"}}'
>>> score_completion(text, Action("terminate"), RewardConfig()).reward
0.8
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from reward_server.config import RewardConfig
from reward_server.rewards.action import RuleWeights, rule_weights
from reward_server.rewards.errors import CompletionTypeError, RewardInputError
from reward_server.rewards.parsing import (
    ParsedFields,
    parse_completion,
    parse_fields,
    parse_ground_truth,
)
from reward_server.rewards.types import (
    Action,
    FormatFailure,
    ParsedCompletion,
    RewardBreakdown,
)

# RewardBreakdown(...) runs a Python-level __new__; the tuple constructor itself is C, and
# this runs once per item.
_tuple_new = tuple.__new__

Outcome = ParsedCompletion | FormatFailure | ParsedFields
T = TypeVar("T")


def _compose(
    outcome: Outcome,
    ground_truth: Action,
    weights: RuleWeights,
    self_certainty: float | None,
) -> RewardBreakdown:
    kind = type(outcome)
    if kind is tuple:
        rationale, action_type, name, text, span = outcome  # type: ignore[misc]
    elif kind is ParsedCompletion:
        rationale, (action_type, name, text), span = outcome  # type: ignore[misc]
    else:
        failed = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, None, None, None, None,
                  outcome[0], outcome[1])  # fmt: skip
        return _tuple_new(RewardBreakdown, failed)
    type_part, attribute, value = weights.parts(action_type, name, text, ground_truth, weights)
    rules = weights.format + type_part + attribute + value
    reward = rules if self_certainty is None else rules + weights.alpha * self_certainty
    best = weights.best[ground_truth.type]
    score = rules / best if best > 0 else 0.0
    fields = (reward, score, weights.format, type_part, attribute, value, self_certainty,
              rationale, action_type, name, text, span, None, None)  # fmt: skip
    return _tuple_new(RewardBreakdown, fields)


def compose_reward(
    outcome: ParsedCompletion | FormatFailure,
    ground_truth: Action,
    config: RewardConfig,
    self_certainty: float | None = None,
) -> RewardBreakdown:
    """Every component of one item's reward from its parse outcome (formulas above)."""
    return _compose(outcome, ground_truth, rule_weights(config), self_certainty)


def compose_batch(
    outcomes: Sequence[Outcome],
    ground_truths: Sequence[Action],
    config: RewardConfig,
    self_certainties: Sequence[float | None] | None = None,
) -> list[RewardBreakdown]:
    """:func:`compose_reward` of each item, in input order; lengths must match."""
    certainties = _certainties_for(len(outcomes), len(ground_truths), self_certainties)
    weights = rule_weights(config)
    return [
        _compose(outcome, truth, weights, certainty)
        for outcome, truth, certainty in zip(outcomes, ground_truths, certainties, strict=True)
    ]


def score_completion(
    completion: str,
    ground_truth: Action,
    config: RewardConfig,
    self_certainty: float | None = None,
) -> RewardBreakdown:
    """Parse ``completion`` with the config's mode and bound, then compose its reward."""
    outcome = parse_completion(completion, config.parse_mode, config.max_completion_chars)
    return compose_reward(outcome, ground_truth, config, self_certainty)


def score_batch(
    completions: Sequence[str],
    ground_truths: Sequence[Action | dict[str, Any] | str],
    config: RewardConfig,
    self_certainties: Sequence[float | None] | None = None,
) -> list[RewardBreakdown]:
    """Rule rewards of a batch, in input order; lengths must match.

    A ground truth is an :class:`Action` or anything :func:`parse_ground_truth` accepts (an
    object or its JSON string). Each item is checked, parsed and composed in turn, so only
    its breakdown outlives the step. Raises :class:`RewardInputError` naming the first bad
    item, e.g. ``ground_truths[3].name`` or ``completions[0]``.
    """
    return _each_item(completions, ground_truths, config, self_certainties, _compose, True)


def reward_batch(
    completions: Sequence[str],
    ground_truths: Sequence[Action | dict[str, Any] | str],
    config: RewardConfig,
    self_certainties: Sequence[float | None] | None = None,
) -> list[float]:
    """Only the total reward of each item: ``score_batch(...)[i].reward``, exactly, for
    callers that need nothing else (a trainer's reward function, offline scoring).

    Skips what only a breakdown needs (the rationale span, the score, one result object
    per item); takes the same arguments and raises the same errors as :func:`score_batch`.
    """
    return _each_item(completions, ground_truths, config, self_certainties, _reward_only, False)


def _each_item(
    completions: Sequence[str],
    ground_truths: Sequence[Any],
    config: RewardConfig,
    self_certainties: Sequence[float | None] | None,
    finish: Callable[[ParsedFields | FormatFailure, Action, RuleWeights, float | None], T],
    with_span: bool,
) -> list[T]:
    """``finish(parse outcome, ground truth, weights, certainty)`` of each item in turn,
    or the error naming the first bad item."""
    certainties = _certainties_for(len(completions), len(ground_truths), self_certainties)
    weights = rule_weights(config)
    mode, max_chars = config.parse_mode, config.max_completion_chars
    try:
        return [
            finish(
                parse_fields(text, mode, max_chars, with_span),
                parse_ground_truth(truth),
                weights,
                value,
            )
            for text, truth, value in zip(completions, ground_truths, certainties, strict=True)
        ]
    except RewardInputError as error:
        raise _first_bad_item(completions, ground_truths) from error


def _reward_only(
    outcome: ParsedFields | FormatFailure,
    ground_truth: Action,
    weights: RuleWeights,
    self_certainty: float | None,
) -> float:
    """``_compose(...).reward`` without the rest of the breakdown."""
    if type(outcome) is FormatFailure:
        return 0.0
    _, action_type, name, text, _ = outcome  # type: ignore[misc]
    type_part, attribute, value = weights.parts(action_type, name, text, ground_truth, weights)
    rules = weights.format + type_part + attribute + value
    return rules if self_certainty is None else rules + weights.alpha * self_certainty


def _first_bad_item(
    completions: Sequence[Any], ground_truths: Sequence[Any]
) -> RewardInputError:
    """The error of the first item that cannot be scored, its field named by batch index
    (looked up only after a failure, so the scoring loop stays lean)."""
    for index, (text, truth) in enumerate(zip(completions, ground_truths, strict=True)):
        try:
            parse_fields(text)
            parse_ground_truth(truth)
        except RewardInputError as error:
            plural = "completions" if isinstance(error, CompletionTypeError) else "ground_truths"
            field = error.field.split(".", 1)
            suffix = f".{field[1]}" if len(field) == 2 else ""
            return type(error)(f"{plural}[{index}]{suffix}", error.message)
    raise AssertionError("a batch item failed to score but none fails on its own")


def _certainties_for(
    items: int, truths: int, self_certainties: Sequence[float | None] | None
) -> Sequence[float | None]:
    if items != truths:
        raise ValueError(f"{items} completions but {truths} ground truths")
    if self_certainties is None:
        return [None] * items
    if len(self_certainties) != items:
        raise ValueError(f"{len(self_certainties)} self-certainties for {items} items")
    return self_certainties
