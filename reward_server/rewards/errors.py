"""Typed errors for bad input to the reward core (not for badly formed completions,
which are scores: see :class:`~reward_server.rewards.types.FormatFailure`)."""

from __future__ import annotations


class RewardInputError(ValueError):
    """Input the reward core cannot score; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class GroundTruthError(RewardInputError):
    """A ground truth of the wrong shape (unknown type, missing name, non-string field)."""


class CompletionTypeError(RewardInputError):
    """A completion that is not a string."""
