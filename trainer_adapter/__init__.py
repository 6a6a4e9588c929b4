"""Adapters plugging the Shop-R1 reward service into RL trainers; they import the client
and ``reward_contract`` only (the same sample checks and log keys as the service's routes).

* :mod:`trainer_adapter.openrlhf`: ``reward_func(queries, prompts, labels)`` (``.py`` mode)
* :mod:`trainer_adapter.verl`: ``async compute_score`` (verl's reward loop, per sample,
  coalesced into batched requests) and ``compute_score_batch`` (verl 0.7.0's legacy
  ``batch`` manager)
* :mod:`trainer_adapter.trl`: ``async shop_r1_reward`` for ``GRPOTrainer``
* :mod:`trainer_adapter.slime`: ``async group_rm(args, samples)`` / ``rm(args, sample)``
* :mod:`trainer_adapter.certainty`: self-certainty from the trainer's own logits (torch,
  imported only by that module)

Configured by ``SHOP_R1_*`` environment variables: see :mod:`trainer_adapter._settings`.
Nothing is imported here eagerly, so importing one adapter loads only what it needs.
"""

from __future__ import annotations

from trainer_adapter._settings import AdapterSettings

__all__ = ["AdapterSettings"]
