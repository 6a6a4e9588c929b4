"""The drivers' one calling convention: ``python DRIVER SPEC.json OUT.json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def run(main: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Read the spec named by the first argument, run ``main`` on it, and write its
    result as JSON to the file named by the second."""
    spec_path, out_path = sys.argv[1:3]
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    out = main(spec)
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(out, handle)
