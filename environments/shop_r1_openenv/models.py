"""The wire types of the Shop-R1 OpenEnv environment (OpenEnv's pydantic Action,
Observation and State, which refuse unknown fields)."""

from __future__ import annotations

from typing import Any

from openenv.core.env_server.types import Action, Observation, State
from pydantic import Field


class ShopR1Action(Action):
    """The policy's answer for the current step: its raw text, which should be one JSON
    object ``{"rationale": ..., "action": {"type": ..., "name"?: ..., "text"?: ...}}``.
    Anything else is scored as a format failure (reward 0 with its reason), never refused.
    """

    completion: str = Field(..., description="The policy's raw answer text")
    self_certainty: float | None = Field(
        default=None,
        description="The trainer's own self-certainty of the rationale (used when the "
        "scorer takes provided values: in-process, or self_certainty_source=provided)",
    )


class ShopR1Observation(Observation):
    """The step to act on (``prompt``: the chat the policy answers), and after a step the
    score of the answer just given.

    ``reward`` is the Shop-R1 reward of that answer (None after ``reset``). The
    per-component rewards and the format-failure reason are in ``metadata`` and, because
    OpenEnv 0.3.0 drops ``metadata`` from what its server sends, also in the typed fields
    below, so a client reads them too.
    """

    prompt: list[dict[str, str]] = Field(
        default_factory=list, description="Chat messages of the current step; empty when done"
    )
    episode_id: str = Field(default="", description="The recorded episode being replayed")
    step_id: str | None = Field(default=None, description="'<episode>/<step>' to act on next")
    steps_left: int = Field(default=0, description="Steps of the episode still to act on")
    scored_step_id: str | None = Field(default=None, description="The step just scored")
    components: dict[str, float | None] = Field(
        default_factory=dict,
        description="format, type, attribute, value, self_certainty of the answer just scored",
    )
    score: float | None = Field(default=None, description="The answer's score in [0, 1]")
    format_error: dict[str, str] | None = Field(
        default=None, description="Why the answer failed the format check ({reason, detail})"
    )
    predicted_action: dict[str, Any] | None = Field(
        default=None, description="The action parsed from the answer"
    )
    expected_action: dict[str, str] | None = Field(
        default=None, description="The shopper's real action at the step just scored"
    )


class ShopR1State(State):
    """Where the session stands in its episode."""

    split: str = "train"
    total_reward: float = 0.0
    steps_total: int = 0
