"""What the Shop-R1 environments (verifiers, OpenEnv, NeMo Gym) share.

* :mod:`shop_r1_env.scoring`: one :class:`Scorer` seam with two implementations, the
  reward service through the project's client (:class:`ServiceScorer`, when a URL is
  configured) and the rules core in-process (:class:`RulesScorer`, when none is). Both
  return the client's :class:`~client.RewardResult`, so a skin reads one shape.
* :mod:`shop_r1_env.rows`: the task's rows and episodes from ``shop_task`` (the one task
  builder), or a user's rows from JSON lines.
"""

from __future__ import annotations

from shop_r1_env.rows import TaskFields, TaskSource, load_rows, read_user_rows
from shop_r1_env.scoring import (
    RulesScorer,
    Scorer,
    ScorerSettings,
    ScoringFields,
    ServiceScorer,
    make_scorer,
    scorer_for,
)

__all__ = [
    "RulesScorer",
    "Scorer",
    "ScorerSettings",
    "ScoringFields",
    "ServiceScorer",
    "TaskFields",
    "TaskSource",
    "load_rows",
    "make_scorer",
    "read_user_rows",
    "scorer_for",
]
