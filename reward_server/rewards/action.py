"""Hierarchical action reward with type gating, DARS and a similarity threshold
(REWARD_CONTRACT.md §3).

With ``th(s) = s if s >= threshold else 0`` and everything 0 when ``pred.type != gt.type``:

* terminate:        type = w_type
* click:            type = w_type; attribute = w_click_name * [pred.name non-blank];
                    value = DARS * th(sim(pred.name, gt.name))
* type_and_submit:  type = w_type; attribute = w_name * [name non-blank] + w_text * [text
                    non-blank]; value = w_name_sim * th(sim(name)) + DARS * th(sim(text))

The binary baseline (``action_reward="binary"``) replaces all three: type = attribute = 0,
value = w_exact * [pred is an exact action match (REWARD_CONTRACT.md §6)].

>>> from reward_server.config import RewardConfig
>>> action_reward(Action("click", "refinements.reviews"),
...               Action("click", "refinements.customer_reviews"), RewardConfig())
ActionReward(type=0.3, attribute=0.2, value=800.0)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from reward_contract import ACTION_TYPES
from reward_server.config import RewardConfig
from reward_server.rewards.metrics import is_exact_action
from reward_server.rewards.similarity import similarity_at_least
from reward_server.rewards.types import Action, ActionReward

_NO_CREDIT = (0.0, 0.0, 0.0)


class RuleWeights(NamedTuple):
    """A config's rule numbers, read once per batch rather than once per item."""

    format: float
    type: float
    click_name_presence: float
    type_name_presence: float
    type_text_presence: float
    name_similarity: float
    dars: float
    threshold: float
    alpha: float
    exact_action: float
    best: dict[str, float]  # ground-truth type -> ``config.best_for(type)``
    # (pred type, name, text, gt, weights) -> (type, attribute, value): the config's rule,
    # chosen once per batch so the per-item path never asks which one.
    parts: Callable[[str, str, str, Action, RuleWeights], tuple[float, float, float]]


@lru_cache(maxsize=256)
def rule_weights(config: RewardConfig) -> RuleWeights:
    """The weights of ``config`` (cached: configs are frozen)."""
    return RuleWeights(
        config.format_weight,
        config.type_weight,
        config.click_name_presence,
        config.type_name_presence,
        config.type_text_presence,
        config.name_similarity_weight,
        config.dars,
        config.similarity_threshold,
        config.alpha,
        config.exact_action_weight,
        {kind: config.best_for(kind) for kind in ACTION_TYPES},
        binary_parts if config.action_reward == "binary" else action_parts,
    )


def action_parts(
    pred_type: str, pred_name: str, pred_text: str, gt: Action, weights: RuleWeights
) -> tuple[float, float, float]:
    """(type, attribute, value) of the predicted action against ``gt`` (formulas above);
    the per-item hot path, so it takes the fields and returns a plain tuple."""
    gt_type = gt.type
    if pred_type != gt_type:
        return _NO_CREDIT
    if gt_type == "terminate":
        return weights.type, 0.0, 0.0
    threshold = weights.threshold
    # "non-blank" (REWARD_CONTRACT.md §3): at least one non-white-space character.
    name_present = bool(pred_name) and not pred_name.isspace()
    name_sim = similarity_at_least(pred_name, gt.name, threshold)
    if gt_type == "click":
        attribute = weights.click_name_presence if name_present else 0.0
        return weights.type, attribute, weights.dars * name_sim
    attribute = (weights.type_name_presence if name_present else 0.0) + (
        weights.type_text_presence if pred_text and not pred_text.isspace() else 0.0
    )
    text_sim = similarity_at_least(pred_text, gt.text, threshold)
    return weights.type, attribute, weights.name_similarity * name_sim + weights.dars * text_sim


def binary_parts(
    pred_type: str, pred_name: str, pred_text: str, gt: Action, weights: RuleWeights
) -> tuple[float, float, float]:
    """(0, 0, w_exact or 0): the binary baseline's credit, reported as the value part."""
    exact = is_exact_action(pred_type, pred_name, pred_text, gt, weights.threshold)
    return 0.0, 0.0, weights.exact_action if exact else 0.0


def action_reward(pred: Action, gt: Action, config: RewardConfig) -> ActionReward:
    """Type, attribute and value rewards of ``pred`` against ``gt`` (formulas above)."""
    weights = rule_weights(config)
    return ActionReward(*weights.parts(pred.type, pred.name, pred.text, gt, weights))
