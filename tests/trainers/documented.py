"""The commands the examples' pages document, read from the pages themselves, so that a
test runs exactly what a user copies."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def command(page: str, label: str) -> list[str]:
    """The words of the ```bash block of ``examples/<page>`` whose first line is
    ``# <label>``, continuation lines joined, comment and ``export`` lines left out."""
    text = (EXAMPLES / page).read_text(encoding="utf-8")
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = block.splitlines()
        if lines and lines[0].strip() == f"# {label}":
            body = [line for line in lines[1:] if not line.lstrip().startswith(("#", "export "))]
            return shlex.split(" ".join(line.rstrip().rstrip("\\") for line in body))
    raise AssertionError(f"examples/{page} has no ```bash block labelled {label!r}")


def after_program(words: list[str], program: str) -> list[str]:
    """The arguments after ``python -m <program>`` (or ``<program>``)."""
    for index, word in enumerate(words):
        if word == program:
            return words[index + 1 :]
    raise AssertionError(f"{program} is not in {words}")


def localised(words: list[str], replacements: dict[str, str]) -> list[str]:
    """``words`` with placeholders (``$HOME``, ``/path/to/shop-r1-reward``) and ``key=``
    values replaced: ``{"actor_rollout_ref.model.path=": "/tmp/tok"}`` sets that key."""
    out = []
    for word in words:
        for old, new in replacements.items():
            if old.endswith("=") and word.startswith(old):
                word = old + new
            elif not old.endswith("="):
                word = word.replace(old, new)
        out.append(word)
    return out


def placeholders(home: Path) -> dict[str, str]:
    return {"$HOME": str(home), "/path/to/shop-r1-reward": str(REPO)}
