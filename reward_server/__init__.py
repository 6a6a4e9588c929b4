"""shop-r1-reward: the Shop-R1 reward design served over HTTP."""

# The one place the version is written (pyproject.toml reads it; CHANGELOG.md tells it).
__version__ = "0.2.0"
