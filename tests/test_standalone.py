"""The repository stands alone: no tracked file points outside it or at a machine it was
built on, and none speaks of a tracker's issues; the reward contract and the data the
tests and benchmarks read are in the repository."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import DATA, REPO

# Built from parts so that this file does not match itself.
OUTSIDE = [
    re.compile(r"\.\./" + "shared"),
    re.compile(r"(?<![\w.])/" + r"(work|root|home)/"),
    re.compile("/" + "shared/(spec|data)"),
]
TRACKER_TALK = [
    re.compile(r"\bissues? #?\d+", re.IGNORECASE),
    re.compile(r"\btickets? #?\d+", re.IGNORECASE),
    re.compile("house " + "habit", re.IGNORECASE),
    re.compile("REWARD_" + "SPEC"),
]
# Release notes may name the changes they list; nothing else may.
TALK_ALLOWED = {"CHANGELOG.md"}


def tracked_text_files() -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in listed.decode().split("\0"):
        path = REPO / name
        if not name or not path.is_file():
            continue
        head = path.read_bytes()[:8192]
        if b"\0" in head:
            continue  # binary
        files.append(name)
    return files


def offending_lines(patterns: list[re.Pattern[str]], skip: set[str]) -> list[str]:
    found = []
    for name in tracked_text_files():
        if name in skip or name == "tests/test_standalone.py":
            continue
        text = (REPO / name).read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if any(pattern.search(line) for pattern in patterns):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    return found


def test_no_path_outside_the_repository() -> None:
    assert offending_lines(OUTSIDE, set()) == []


def test_no_word_about_a_tracker() -> None:
    assert offending_lines(TRACKER_TALK, TALK_ALLOWED) == []


def test_contract_and_data_are_in_the_repository() -> None:
    assert (REPO / "docs" / "REWARD_CONTRACT.md").is_file()
    assert DATA.is_relative_to(REPO)
    files = sorted(path.name for path in DATA.glob("*.jsonl"))
    assert len(files) == 4
    readme = (DATA / "README.md").read_text()
    for name in files:
        assert name in readme  # each file's source and licence is given
    assert "CC BY 4.0" in readme and "Changes made" in readme
