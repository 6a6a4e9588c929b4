"""shop-r1-reward: the Shop-R1 reward design served over HTTP."""

__version__ = "0.1.0"
