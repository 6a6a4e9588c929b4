"""shop-r1 for verifiers: the Shop-R1 task with its exact reward (see taskset.py)."""

from __future__ import annotations

from shop_r1.taskset import ShopR1Taskset

__all__ = ["ShopR1Taskset"]
