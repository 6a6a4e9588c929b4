"""OpenRLHF ``.py``-mode reward file: ``--reward.remote_url examples/openrlhf/reward_func.py``.

OpenRLHF loads this file by path and calls ``reward_func(queries, prompts, labels)``; the
work is done by :func:`trainer_adapter.openrlhf.reward_func` (one chunked, retried,
order-checked call to the reward service per batch). Requires the ``shop-r1-reward``
package importable in the Ray workers (``pip install`` it, or ``PYTHONPATH``).
"""

from __future__ import annotations

from trainer_adapter.openrlhf import reward_func

__all__ = ["reward_func"]
