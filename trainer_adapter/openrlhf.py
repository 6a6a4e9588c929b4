"""OpenRLHF adapter: ``--reward.remote_url /path/to/examples/openrlhf/reward_func.py``.

``.py`` mode: OpenRLHF loads that file and calls ``reward_func(queries, prompts, labels)``
(OpenRLHF 0.11: once per sample, in a worker thread); the lists are scored in one client
call (chunked, retried, order and length checked).

* ``queries``: prompt + response decoded as one text, special tokens kept. OpenRLHF cuts
  an over-long prompt from the left before generating, so a query may hold only the end
  of its prompt: the response then starts after that end (:func:`reward_contract.query.split_query`)
  and the sample's self-certainty, computed on the part of the prompt the policy saw, is
  flagged ``self_certainty_approximate`` = 1 (the same reading as the service's URL mode:
  :mod:`reward_contract.samples`);
* ``prompts``: the templated prompts;
* ``labels``: the ``--data.label_key`` column: each row's ground-truth action, a JSON
  string such as ``'{"type": "click", "name": "buy_now"}'`` (or a dict).

Returns ``{"rewards", "scores", "extra_logs"}``: ``rewards`` the Shop-R1 reward (feeds the
advantage), ``scores`` its 0..1 normalisation (dynamic filtering), ``extra_logs`` the same
keys for every sample (OpenRLHF concatenates them across samples; see
:mod:`reward_contract.logs` for how a missing self-certainty is written). Values are
``torch`` tensors when torch is already loaded (always, inside OpenRLHF), else plain
lists: this module never imports torch itself.

A failure (service unreachable after the client's retries, a bad label) is logged at
ERROR and raised. OpenRLHF 0.11 catches it, logs it at INFO and leaves that sample
without a reward, so watch for this module's ERROR lines.

URL mode needs no Python at all: ``--reward.remote_url http://HOST:8000/get_reward``. The
server cuts the response out of the query the same way as here.

Configuration: the ``SHOP_R1_*`` variables of :mod:`trainer_adapter._settings`
(``SHOP_R1_REWARD_URL``, ``SHOP_R1_API_KEY``, ...), set in the Ray runtime env.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from client import ScoreItem
from reward_contract.logs import LOG_KEYS
from reward_contract.samples import SampleNames, check_lengths, openrlhf_sample
from trainer_adapter._results import component_lists
from trainer_adapter._settings import AdapterSettings, sync_client

__all__ = ["build_items", "reward_func"]

log = logging.getLogger(__name__)


def build_items(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]
) -> tuple[list[ScoreItem], list[bool]]:
    """Score items from OpenRLHF's three lists, and which prompts the trainer had cut.

    Each sample is read as the service's ``/get_reward`` reads it
    (:func:`reward_contract.samples.openrlhf_sample`); a sample that fails a check raises
    :class:`~reward_contract.samples.SampleError` (a ``ValueError``) naming its list entry.
    """
    check_lengths(len(queries), prompts=len(prompts), labels=len(labels))
    items, cut = [], []
    for index, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
        names = SampleNames(f"queries[{index}]", f"labels[{index}]", f"prompts[{index}]")
        sample = openrlhf_sample(query, prompt, label, names)
        items.append(
            ScoreItem(completion=sample.response, ground_truth=sample.label, prompt=sample.prompt)
        )
        cut.append(sample.prompt_cut)
    return items, cut


def _as_output(values: list[float]) -> Any:
    torch = sys.modules.get("torch")  # never imported here: used when the trainer has it
    return torch.tensor(values, dtype=torch.float32) if torch is not None else values


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **_: Any
) -> dict[str, Any]:
    """OpenRLHF ``.py``-mode reward: the lists in one (chunked) service call."""
    if not queries:
        empty = _as_output([])
        return {"rewards": empty, "scores": empty, "extra_logs": {k: empty for k in LOG_KEYS}}
    try:
        settings = AdapterSettings.from_env()
        items, cut = build_items(queries, prompts, labels)
        batch = sync_client(settings).score(items, **settings.score_kwargs())
    except Exception as exc:
        # OpenRLHF 0.11 logs a reward failure at INFO and drops the reward: say it louder.
        log.error("Shop-R1 reward failed for %d samples: %s", len(queries), exc)
        raise
    logs = component_lists(batch.results, cut)
    return {
        "rewards": _as_output(batch.rewards),
        "scores": _as_output(batch.scores),
        "extra_logs": {name: _as_output(values) for name, values in logs.items()},
    }
