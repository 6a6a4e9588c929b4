"""Hierarchical action reward with type gating, DARS and a similarity threshold
(REWARD_SPEC section 3).

With ``th(s) = s if s >= threshold else 0`` and everything 0 when ``pred.type != gt.type``:

* terminate:        type = w_type
* click:            type = w_type; attribute = w_click_name * [pred.name non-blank];
                    value = DARS * th(sim(pred.name, gt.name))
* type_and_submit:  type = w_type; attribute = w_name * [name non-blank] + w_text * [text
                    non-blank]; value = w_name_sim * th(sim(name)) + DARS * th(sim(text))

>>> from reward_server.config import RewardConfig
>>> action_reward(Action("click", "refinements.reviews"),
...               Action("click", "refinements.customer_reviews"), RewardConfig())
ActionReward(type=0.3, attribute=0.2, value=800.0)
"""

from __future__ import annotations

from reward_server.config import RewardConfig
from reward_server.rewards.parsing import nonblank
from reward_server.rewards.similarity import rouge_l_f1
from reward_server.rewards.types import Action, ActionReward

_NO_CREDIT = ActionReward(0.0, 0.0, 0.0)


def thresholded_similarity(prediction: str, target: str, threshold: float) -> float:
    """``sim(prediction, target)`` when it reaches ``threshold``, else 0."""
    similarity = rouge_l_f1(prediction, target)
    return similarity if similarity >= threshold else 0.0


def action_reward(pred: Action, gt: Action, config: RewardConfig) -> ActionReward:
    """Type, attribute and value rewards of ``pred`` against ``gt`` (formulas above)."""
    if pred.type != gt.type:
        return _NO_CREDIT
    if gt.type == "terminate":
        return ActionReward(config.type_weight, 0.0, 0.0)
    threshold = config.similarity_threshold
    name_present = nonblank(pred.name)
    if gt.type == "click":
        attribute = config.click_name_presence if name_present else 0.0
        value = config.dars * thresholded_similarity(pred.name, gt.name, threshold)
        return ActionReward(config.type_weight, attribute, value)
    attribute = (config.type_name_presence if name_present else 0.0) + (
        config.type_text_presence if nonblank(pred.text) else 0.0
    )
    value = config.name_similarity_weight * thresholded_similarity(
        pred.name, gt.name, threshold
    ) + config.dars * thresholded_similarity(pred.text, gt.text, threshold)
    return ActionReward(config.type_weight, attribute, value)
