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

from reward_server.config import RewardConfig
from reward_server.rewards.action import action_reward
from reward_server.rewards.parsing import parse_completion
from reward_server.rewards.types import (
    Action,
    FormatFailure,
    ParsedCompletion,
    RewardBreakdown,
)


def compose_reward(
    outcome: ParsedCompletion | FormatFailure,
    ground_truth: Action,
    config: RewardConfig,
    self_certainty: float | None = None,
) -> RewardBreakdown:
    """Every component of one item's reward from its parse outcome (formulas above)."""
    if isinstance(outcome, FormatFailure):
        return RewardBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, outcome)
    type_part, attribute, value = action_reward(outcome.action, ground_truth, config)
    rules = config.format_weight + type_part + attribute + value
    reward = rules if self_certainty is None else rules + config.alpha * self_certainty
    best = config.best_for(ground_truth.type)
    # Positional: this runs once per item, and keyword construction costs more.
    return RewardBreakdown(
        reward, rules / best if best > 0 else 0.0, config.format_weight, type_part,
        attribute, value, self_certainty, outcome, None,
    )


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
    completions: list[str],
    ground_truths: list[Action],
    config: RewardConfig,
    self_certainties: list[float | None] | None = None,
) -> list[RewardBreakdown]:
    """Rule rewards of a batch, in input order; lengths must match."""
    if len(completions) != len(ground_truths):
        raise ValueError(
            f"{len(completions)} completions but {len(ground_truths)} ground truths"
        )
    certainties = self_certainties or [None] * len(completions)
    if len(certainties) != len(completions):
        raise ValueError(f"{len(certainties)} self-certainties for {len(completions)} items")
    return [
        score_completion(text, truth, config, certainty)
        for text, truth, certainty in zip(completions, ground_truths, certainties, strict=True)
    ]
