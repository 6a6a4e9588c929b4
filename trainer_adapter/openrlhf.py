"""OpenRLHF adapter: ``--reward.remote_url /path/to/trainer_adapter/openrlhf.py``.

``.py`` mode: OpenRLHF loads this file and calls ``reward_func(queries, prompts, labels)``
once per batch; the whole batch is scored in one client call (chunked, retried, checked).

* ``queries``: prompt + response as decoded with special tokens (chat template included);
* ``prompts``: the templated prompts (each a prefix of its query);
* ``labels``: the ``--data.label_key`` column: each row's ground-truth action, a JSON
  string such as ``'{"type": "click", "name": "buy_now"}'`` (or a dict).

Returns ``{"rewards", "scores", "extra_logs"}``: ``rewards`` the Shop-R1 reward (feeds the
advantage), ``scores`` its 0..1 normalisation (dynamic filtering), ``extra_logs`` every
component per sample (OpenRLHF logs their means). Values are ``torch`` tensors when torch
is already loaded (always, inside OpenRLHF), else plain lists: this module never imports
torch itself. A failure raises (after the client's retries) instead of leaving the reward
empty, so a broken reward service stops training with a message saying what to do.

URL mode needs no Python at all: point OpenRLHF at the service's own route,
``--reward.remote_url http://HOST:8000/get_reward`` (several URLs comma-separated). The
server strips the prompt and end-of-turn markers the same way as here.

Configuration: the ``SHOP_R1_*`` variables of :mod:`trainer_adapter._settings`
(``SHOP_R1_REWARD_URL``, ``SHOP_R1_API_KEY``, ...), set in the Ray runtime env.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from client import ScoreItem
from reward_contract import strip_end_markers
from trainer_adapter._results import component_lists
from trainer_adapter._settings import AdapterSettings, sync_client

__all__ = ["build_items", "reward_func"]


def build_items(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]
) -> list[ScoreItem]:
    """Score items from OpenRLHF's three lists: the response is the query minus its prompt
    prefix and trailing end-of-turn markers."""
    if not len(queries) == len(prompts) == len(labels):
        raise ValueError(
            f"OpenRLHF passed {len(queries)} queries, {len(prompts)} prompts and {len(labels)} "
            "labels; they must be aligned (is --data.label_key set?)"
        )
    items = []
    for index, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
        if label is None or label == "":
            raise ValueError(
                f"labels[{index}] is empty: set --data.label_key to the ground-truth column"
            )
        if not query.startswith(prompt):
            raise ValueError(
                f"queries[{index}] does not start with prompts[{index}]; cannot cut the response"
            )
        response = strip_end_markers(query[len(prompt) :])
        items.append(ScoreItem(completion=response, ground_truth=label, prompt=prompt or None))
    return items


def _as_output(values: list[float]) -> Any:
    torch = sys.modules.get("torch")  # never imported here: used when the trainer has it
    return torch.tensor(values, dtype=torch.float32) if torch is not None else values


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **_: Any
) -> dict[str, Any]:
    """OpenRLHF ``.py``-mode reward: the whole batch in one (chunked) service call."""
    if not queries:
        return {"rewards": _as_output([]), "scores": _as_output([]), "extra_logs": {}}
    settings = AdapterSettings.from_env()
    items = build_items(queries, prompts, labels)
    batch = sync_client(settings).score(items, **settings.score_kwargs())
    logs = component_lists(batch.results)
    return {
        "rewards": _as_output(batch.rewards),
        "scores": _as_output(batch.scores),
        "extra_logs": {name: _as_output(values) for name, values in logs.items()},
    }
