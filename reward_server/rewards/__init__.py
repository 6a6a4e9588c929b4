"""The pure reward core (REWARD_CONTRACT.md §2, 3, 5, 6): no torch, no web, no I/O."""

from reward_server.rewards.action import action_reward
from reward_server.rewards.compose import (
    compose_batch,
    compose_reward,
    reward_batch,
    score_batch,
    score_completion,
)
from reward_server.rewards.errors import CompletionTypeError, GroundTruthError, RewardInputError
from reward_server.rewards.metrics import EvalMetrics, evaluate, exact_match
from reward_server.rewards.parsing import parse_completion, parse_fields, parse_ground_truth
from reward_server.rewards.similarity import rouge_l_f1, rouge_tokens
from reward_server.rewards.types import (
    Action,
    ActionReward,
    FormatFailure,
    ParsedCompletion,
    ParsedFields,
    RewardBreakdown,
)

__all__ = [
    "Action",
    "ActionReward",
    "CompletionTypeError",
    "EvalMetrics",
    "FormatFailure",
    "GroundTruthError",
    "ParsedCompletion",
    "ParsedFields",
    "RewardBreakdown",
    "RewardInputError",
    "action_reward",
    "compose_batch",
    "compose_reward",
    "evaluate",
    "exact_match",
    "parse_completion",
    "parse_fields",
    "parse_ground_truth",
    "reward_batch",
    "rouge_l_f1",
    "rouge_tokens",
    "score_batch",
    "score_completion",
]
