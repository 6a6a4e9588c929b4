"""Per-step curves of GRPO runs as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# What each panel shows: the key in a run's step log, and its title.
PANELS = (
    ("reward", "reward (mean)"),
    ("format", "format"),
    ("type", "type"),
    ("attribute", "attribute"),
    ("value", "value (similarity x DARS)"),
    ("self_certainty", "self-certainty"),
    ("format_failure", "format-failure rate"),
    ("terminate_share", "terminate share"),
)


def plot_runs(runs: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: str | Path) -> list[Path]:
    """One PNG of all panels (``grpo_curves.png``) and one PNG per panel, a line per run
    (``runs`` maps a run's label to its step log). Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    figure, axes = plt.subplots(2, 4, figsize=(18, 8), constrained_layout=True)
    for axis, (key, title) in zip(axes.flat, PANELS, strict=True):
        _panel(axis, runs, key, title)
    axes.flat[0].legend(fontsize=8)
    figure.suptitle("GRPO, per step")
    path = out / "grpo_curves.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    written.append(path)
    for key, title in PANELS:
        figure, axis = plt.subplots(figsize=(6, 4), constrained_layout=True)
        _panel(axis, runs, key, title)
        axis.legend(fontsize=8)
        path = out / f"grpo_{key}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


Runs = Mapping[str, Sequence[Mapping[str, Any]]]


def _panel(axis: Any, runs: Runs, key: str, title: str) -> None:
    for label, steps in runs.items():
        points = [(s["step"], s[key]) for s in steps if s.get(key) is not None]
        if points:
            axis.plot(*zip(*points, strict=True), marker=".", label=label)
    if key in ("reward", "value"):
        axis.set_yscale("symlog", linthresh=1.0)  # DARS puts exact answers near 1000
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.grid(alpha=0.3)
