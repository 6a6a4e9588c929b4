"""Shop-R1 as a NeMo Gym resources server: ``/verify`` scores the model's answer.

The request is NeMo Gym's verify request (``responses_create_params``, the model's
``response``) plus the task's metadata from the dataset row: ``ground_truth`` (the
shopper's real next action), an optional ``id`` and the trainer's own
``self_certainty``. The answer is the response's ``output_text``, one JSON object
``{"rationale", "action"}``; the reward is Shop-R1's, exactly::

    reward = 0                                               if the format fails
    reward = format + type + attribute + value [+ alpha * s]  otherwise

and every component comes back as a top-level field (NeMo Gym's aggregate metrics then
profile each one), with ``score`` in [0, 1] and the format-failure reason. A malformed
answer is a format failure, not an HTTP error; an invalid ``ground_truth`` is a 422
naming the field. With ``reward_url`` set the reward service scores it (a service that
cannot be reached is a 502 naming its URL, never a reward of 0); else the rules core
does, in this process. Rows come from ``python -m shop_r1_nemo_gym.data``.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from nemo_gym.base_resources_server import (
    BaseResourcesServerConfig,
    BaseVerifyRequest,
    BaseVerifyResponse,
    SimpleResourcesServer,
)
from pydantic import PrivateAttr
from shop_r1_env import Scorer, ScoringFields, scorer_for

from client import BadRequestError, RewardClientError, ScoreItem
from reward_server.rewards import RewardInputError


class ShopR1ResourcesServerConfig(BaseResourcesServerConfig, ScoringFields):
    """The server's config: NeMo Gym's, and where the reward is computed (``reward_url``,
    unset: the rules core here; ``api_key``, ``self_certainty_source``,
    ``reward_profile``, ``reward_config``, ``reward_timeout``, ``reward_max_attempts``)."""


class ShopR1VerifyRequest(BaseVerifyRequest):
    ground_truth: dict[str, str] | str
    """The shopper's real next action (object or JSON string)."""
    id: str | None = None
    self_certainty: float | None = None


class ShopR1VerifyResponse(BaseVerifyResponse, ShopR1VerifyRequest):
    """The request, the reward, and every component; ``self_certainty`` is now the
    component (the provided value, or None where the format failed or none was given)."""

    score: float
    format: float
    type: float
    attribute: float
    value: float
    self_certainty: float | None
    format_ok: bool
    format_error_reason: str | None
    format_error_detail: str | None
    predicted_action: dict[str, Any] | None


class ShopR1ResourcesServer(SimpleResourcesServer):
    config: ShopR1ResourcesServerConfig
    _scorer: Scorer | None = PrivateAttr(default=None)

    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = scorer_for(self.config.scorer_settings())
        return self._scorer

    async def verify(self, body: ShopR1VerifyRequest) -> ShopR1VerifyResponse:
        item = ScoreItem(
            completion=body.response.output_text,
            ground_truth=body.ground_truth,
            prompt=chat_messages(body.responses_create_params),
            id=body.id,
            self_certainty=body.self_certainty,
        )
        try:
            (result,) = await self.scorer().ascore([item])
        except (BadRequestError, RewardInputError) as exc:  # the row's ground truth is bad
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except RewardClientError as exc:  # the reward service failed: its URL and why
            raise HTTPException(status_code=502, detail=str(exc)) from exc
        components = result.components
        error = result.format_error
        return ShopR1VerifyResponse(
            **body.model_dump(exclude={"self_certainty"}),
            reward=result.reward,
            score=result.score,
            format=components.format,
            type=components.type,
            attribute=components.attribute,
            value=components.value,
            self_certainty=components.self_certainty,
            format_ok=result.format_ok,
            format_error_reason=None if error is None else error.reason,
            format_error_detail=None if error is None else error.detail,
            predicted_action=result.action,
        )


def chat_messages(params: Any) -> list[dict[str, str]] | None:
    """The request's input as chat messages (for the service's self-certainty), or None
    where it holds anything but text messages."""
    messages = [{"role": "system", "content": params.instructions}] if params.instructions else []
    if isinstance(params.input, str):
        return [*messages, {"role": "user", "content": params.input}]
    for entry in params.input:
        role, content = _field(entry, "role"), _field(entry, "content")
        if not isinstance(role, str) or not isinstance(content, str):
            return None
        messages.append({"role": role, "content": content})
    return messages


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)


if __name__ == "__main__":
    ShopR1ResourcesServer.run_webserver()
