"""Evaluation metrics of REWARD_CONTRACT.md §6 (the paper's Tables 2 and 3).

Over (parse outcome, ground truth) pairs:

* exact action accuracy: format valid, types equal, and click -> names equal after
  stripping; type_and_submit -> names equal and ``sim(text) >= threshold``; terminate ->
  the type alone;
* action-type accuracy: format valid and types equal;
* action-type macro-F1: mean over the action types that occur (as ground truth or as a
  prediction) of ``F1_c = 2 TP / (2 TP + FP + FN)``; a format failure is a wrong
  prediction (a false negative of its ground-truth type, no type's false positive);
* each of these per ground-truth type (the per-type F1 is that type's F1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from reward_contract import ACTION_TYPES
from reward_server.rewards.similarity import rouge_l_f1
from reward_server.rewards.types import Action, FormatFailure, ParsedCompletion


def exact_match(
    outcome: ParsedCompletion | FormatFailure, ground_truth: Action, threshold: float
) -> bool:
    """Whether a prediction is an exact action match (definition above)."""
    if isinstance(outcome, FormatFailure):
        return False
    pred = outcome.action
    return is_exact_action(pred.type, pred.name, pred.text, ground_truth, threshold)


def is_exact_action(
    pred_type: str, pred_name: str, pred_text: str, ground_truth: Action, threshold: float
) -> bool:
    """Whether a well-formed prediction's action, given by its fields, exactly matches
    ``ground_truth`` (definition above; also the binary action reward's test)."""
    if pred_type != ground_truth.type:
        return False
    if pred_type == "terminate":
        return True
    names_equal = pred_name.strip() == ground_truth.name.strip()
    if pred_type == "click":
        return names_equal
    return names_equal and rouge_l_f1(pred_text, ground_truth.text) >= threshold


@dataclass
class TypeMetrics:
    count: int = 0
    exact_accuracy: float = 0.0
    type_accuracy: float = 0.0
    f1: float = 0.0
    predicted: int = 0


@dataclass
class EvalMetrics:
    count: int = 0
    format_valid_rate: float = 0.0
    exact_accuracy: float = 0.0
    type_accuracy: float = 0.0
    type_macro_f1: float = 0.0
    per_type: dict[str, TypeMetrics] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def evaluate(
    pairs: Iterable[tuple[ParsedCompletion | FormatFailure, Action]], threshold: float = 0.75
) -> EvalMetrics:
    """Section-6 metrics over ``(outcome, ground_truth)`` pairs."""
    # Keyed by the action types; read with an Action's type, a plain str.
    support: dict[str, int] = dict.fromkeys(ACTION_TYPES, 0)
    predicted: dict[str, int] = dict.fromkeys(ACTION_TYPES, 0)
    type_hits: dict[str, int] = dict.fromkeys(ACTION_TYPES, 0)
    exact_hits: dict[str, int] = dict.fromkeys(ACTION_TYPES, 0)
    valid = 0
    for outcome, truth in pairs:
        support[truth.type] += 1
        if isinstance(outcome, FormatFailure):
            continue
        valid += 1
        predicted[outcome.action.type] += 1
        if outcome.action.type == truth.type:
            type_hits[truth.type] += 1
            exact_hits[truth.type] += exact_match(outcome, truth, threshold)
    total = sum(support.values())
    per_type: dict[str, TypeMetrics] = {}
    f1_scores = []
    for kind in ACTION_TYPES:
        true_pos = type_hits[kind]
        false_pos = predicted[kind] - true_pos
        false_neg = support[kind] - true_pos
        f1 = _ratio(2 * true_pos, 2 * true_pos + false_pos + false_neg)
        if support[kind] or predicted[kind]:
            f1_scores.append(f1)
        per_type[kind] = TypeMetrics(
            count=support[kind],
            exact_accuracy=_ratio(exact_hits[kind], support[kind]),
            type_accuracy=_ratio(true_pos, support[kind]),
            f1=f1,
            predicted=predicted[kind],
        )
    return EvalMetrics(
        count=total,
        format_valid_rate=_ratio(valid, total),
        exact_accuracy=_ratio(sum(exact_hits.values()), total),
        type_accuracy=_ratio(sum(type_hits.values()), total),
        type_macro_f1=sum(f1_scores) / len(f1_scores) if f1_scores else 0.0,
        per_type=per_type,
    )
