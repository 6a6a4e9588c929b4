"""Composition of the components into the total reward and the [0, 1] score
(REWARD_SPEC section 5)::

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

from collections.abc import Sequence

from reward_server.config import RewardConfig
from reward_server.rewards.action import RuleWeights, action_parts, rule_weights
from reward_server.rewards.parsing import ParsedFields, parse_completion, parse_fields
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


def _compose(
    outcome: Outcome,
    ground_truth: Action,
    weights: RuleWeights,
    self_certainty: float | None,
) -> RewardBreakdown:
    kind = type(outcome)
    if kind is FormatFailure:
        failed = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, None, None, None, None,
                  outcome[0], outcome[1])  # fmt: skip
        return _tuple_new(RewardBreakdown, failed)
    if kind is ParsedCompletion:
        rationale, (action_type, name, text), span = outcome  # type: ignore[misc]
    else:
        rationale, action_type, name, text, span = outcome  # type: ignore[misc]
    type_part, attribute, value = action_parts(action_type, name, text, ground_truth, weights)
    rules = weights.format + type_part + attribute + value
    reward = rules if self_certainty is None else rules + weights.alpha * self_certainty
    gt_type = ground_truth.type
    if gt_type == "type_and_submit":
        best = weights.best_type_and_submit
    elif gt_type == "click":
        best = weights.best_click
    else:
        best = weights.best_terminate
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
    ground_truths: Sequence[Action],
    config: RewardConfig,
    self_certainties: Sequence[float | None] | None = None,
) -> list[RewardBreakdown]:
    """Rule rewards of a batch, in input order; lengths must match.

    Each item is parsed and composed in turn, so only its breakdown outlives the step.
    """
    certainties = _certainties_for(len(completions), len(ground_truths), self_certainties)
    weights = rule_weights(config)
    mode, max_chars = config.parse_mode, config.max_completion_chars
    return [
        _compose(parse_fields(text, mode, max_chars), truth, weights, certainty)
        for text, truth, certainty in zip(completions, ground_truths, certainties, strict=True)
    ]


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
