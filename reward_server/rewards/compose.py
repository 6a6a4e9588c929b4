"""Composition of the components into the total reward and the [0, 1] score
(REWARD_CONTRACT.md §5)::

    reward = 0                                                   if the format fails
    reward = format + type + attribute + value + alpha * s        otherwise
    score  = (format + type + attribute + value) / best(gt.type)  (0 if the format fails)

``alpha * s`` is omitted when ``s`` is None (self-certainty not requested or not computed).
:func:`_compose_all` is the one place these formulas are written; every public function
here goes through it.

>>> from reward_server.config import RewardConfig
>>> from reward_server.rewards.types import Action
>>> text = '{"rationale": "Done.", "action": {"type": "terminate"}}'
>>> score_completion(text, Action("terminate"), RewardConfig()).reward
0.8
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any

from reward_server.config import RewardConfig
from reward_server.rewards.action import RuleWeights, rule_weights
from reward_server.rewards.errors import CompletionTypeError, RewardInputError
from reward_server.rewards.parsing import parse_completion, parse_fields, parse_ground_truth
from reward_server.rewards.types import (
    Action,
    FormatFailure,
    ParsedCompletion,
    ParsedFields,
    RewardBreakdown,
)

Outcome = ParsedCompletion | FormatFailure | ParsedFields
# See reward_server.rewards.types: built by field name, without a class call's dict.
_new_breakdown = RewardBreakdown.__new__


def _compose_all(
    outcomes: Iterable[Outcome],
    truths: Iterable[Action],
    certainties: Iterable[float | None],
    weights: RuleWeights,
    breakdowns: bool,
) -> list[Any]:
    """Each item's :class:`RewardBreakdown`, or only its reward (the formulas above), in
    input order.

    The per-item loop of every batch, breakdowns and bare rewards alike, so the formulas
    are written once. It makes no call per item beyond the action reward's: a Python call
    is a measurable share of an item's cost (bench/bench_rules.py).
    """
    results: list[Any] = []
    append = results.append
    # Read once: the loop runs per item.
    action_parts, format_weight, alpha, best_for = (
        weights.parts, weights.format, weights.alpha, weights.best
    )
    for outcome, truth, certainty in zip(outcomes, truths, certainties, strict=True):
        if not isinstance(outcome, ParsedFields):
            if isinstance(outcome, FormatFailure):
                append(
                    _new_breakdown(
                        RewardBreakdown, reward=0.0, score=0.0, format=0.0, type=0.0,
                        attribute=0.0, value=0.0, failure_reason=outcome.reason,
                        failure_detail=outcome.detail,
                    )
                    if breakdowns
                    else 0.0
                )
                continue
            outcome = _flat(outcome)
        action_type, name, text = outcome.action_type, outcome.name, outcome.text
        type_part, attribute, value = action_parts(action_type, name, text, truth, weights)
        rules = format_weight + type_part + attribute + value
        reward = rules if certainty is None else rules + alpha * certainty
        if not breakdowns:
            append(reward)
            continue
        best = best_for[truth.type]
        append(
            _new_breakdown(
                RewardBreakdown, reward=reward, score=rules / best if best > 0 else 0.0,
                format=format_weight, type=type_part, attribute=attribute, value=value,
                self_certainty=certainty, rationale=outcome.rationale, action_type=action_type,
                action_name=name, action_text=text, rationale_span=outcome.rationale_span,
            )
        )
    return results


def _flat(outcome: ParsedCompletion) -> ParsedFields:
    """A parsed completion as :func:`_compose_all` reads it."""
    action = outcome.action
    return ParsedFields(
        rationale=outcome.rationale, action_type=action.type, name=action.name,
        text=action.text, rationale_span=outcome.rationale_span,
    )


def compose_reward(
    outcome: ParsedCompletion | FormatFailure,
    ground_truth: Action,
    config: RewardConfig,
    self_certainty: float | None = None,
) -> RewardBreakdown:
    """Every component of one item's reward from its parse outcome (formulas above)."""
    return compose_batch([outcome], [ground_truth], config, [self_certainty])[0]


def compose_batch(
    outcomes: Sequence[Outcome],
    ground_truths: Sequence[Action],
    config: RewardConfig,
    self_certainties: Sequence[float | None] | None = None,
) -> list[RewardBreakdown]:
    """:func:`compose_reward` of each item, in input order; lengths must match."""
    certainties = _certainties_for(len(outcomes), len(ground_truths), self_certainties)
    return _compose_all(outcomes, ground_truths, certainties, rule_weights(config), True)


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
    return _each_item(completions, ground_truths, config, self_certainties, True)


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
    return _each_item(completions, ground_truths, config, self_certainties, False)


def _each_item(
    completions: Sequence[str],
    ground_truths: Sequence[Any],
    config: RewardConfig,
    self_certainties: Sequence[float | None] | None,
    breakdowns: bool,
) -> list[Any]:
    """Parse and compose each item in turn (lazily, so only its result outlives the
    step; the span is looked for only for a breakdown), or raise the error naming the
    first bad item."""
    certainties = _certainties_for(len(completions), len(ground_truths), self_certainties)
    outcomes = map(
        parse_fields,
        completions,
        repeat(config.parse_mode),
        repeat(config.max_completion_chars),
        repeat(breakdowns),
    )
    truths = map(parse_ground_truth, ground_truths)
    try:
        return _compose_all(outcomes, truths, certainties, rule_weights(config), breakdowns)
    except RewardInputError as error:
        raise _first_bad_item(completions, ground_truths) from error


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
