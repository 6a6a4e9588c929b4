"""Shop-R1 as an OpenEnv environment: replay recorded shopping sessions step by step,
each answer scored with the exact Shop-R1 reward (see ``server/shop_r1_environment.py``)."""

from __future__ import annotations

from .client import ShopR1Env
from .models import ShopR1Action, ShopR1Observation, ShopR1State

__all__ = ["ShopR1Action", "ShopR1Env", "ShopR1Observation", "ShopR1State"]
