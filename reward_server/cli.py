"""Command line: ``shop-r1-reward serve | score | eval``.

``score IN.jsonl`` reads one JSON object a line (``completion``, ``ground_truth``, optional
``prompt``, ``id``, ``self_certainty``) and writes one JSON object a line, in input order:
the reward breakdown, or ``{"line": N, "error": {...}}`` for a line that could not be
scored (the rest still score; the exit status is 1 when any line failed).
``eval IN.jsonl`` prints the REWARD_CONTRACT.md §6 metrics, overall and per type.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, TextIO

from pydantic import ValidationError

from reward_server import __version__
from reward_server.config import PROFILES, RewardConfig, load_config
from reward_server.protocol import RewardItem, describe_validation_error
from reward_server.results import (
    NO_CERTAINTY,
    ItemResult,
    json_bytes,
    provided_certainty,
    result_dict,
)
from reward_server.rewards import compose_reward, evaluate, parse_completion
from reward_server.rewards.metrics import EvalMetrics


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default="paper", choices=sorted(PROFILES),
        help="reward profile (REWARD_CONTRACT.md §8; default: paper)",
    )
    parser.add_argument("--config", dest="config_path", help="JSON file of config overrides")
    parser.add_argument("--parse-mode", choices=["strict", "lenient"], help="override parse mode")


def _config_from(args: argparse.Namespace) -> RewardConfig:
    config = load_config(args.profile, args.config_path)
    if args.parse_mode:
        config = config.with_overrides({"parse_mode": args.parse_mode})
    return config


def read_items(stream: BinaryIO) -> Iterator[tuple[int, RewardItem | tuple[str, str]]]:
    """``(line number, item)`` for each non-blank line, or ``(line, (field, message))``.

    Lines are decoded one at a time so one line of invalid UTF-8 is one bad line."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, ("line", f"not valid UTF-8: {exc}")
            continue
        if not line.strip():
            continue
        try:
            payload: Any = json.loads(line)
        except (ValueError, RecursionError) as exc:
            yield number, ("line", f"not valid JSON: {exc}")
            continue
        if not isinstance(payload, dict):
            yield number, ("line", "each line must be a JSON object")
            continue
        try:
            yield number, RewardItem.model_validate(payload)
        except ValidationError as exc:
            yield number, describe_validation_error(exc.errors()[0])


def score_stream(source: BinaryIO, sink: TextIO, errors: TextIO, config: RewardConfig) -> int:
    """Score every line of ``source`` into ``sink``; return the number of bad lines."""
    bad = 0
    config_hash = config.config_hash()
    for index, (number, entry) in enumerate(read_items(source)):
        if isinstance(entry, tuple):
            field, message = entry
            bad += 1
            errors.write(f"line {number}: {field}: {message}\n")
            sink.write(json.dumps({"line": number, "error": {"field": field, "message": message}}))
            sink.write("\n")
            continue
        outcome = parse_completion(entry.completion, config.parse_mode, config.max_completion_chars)
        provided = entry.self_certainty
        breakdown = compose_reward(outcome, entry.ground_truth, config, provided)
        info = NO_CERTAINTY if provided is None else provided_certainty(breakdown.format_ok)
        result = result_dict(ItemResult(index, entry.id, breakdown, info))
        line = {"line": number, **result, "config_hash": config_hash}
        sink.write(json_bytes(line).decode())
        sink.write("\n")
    return bad


def format_metrics(metrics: EvalMetrics) -> str:
    """A plain-text table of the section-6 metrics."""
    header = f"{'ground truth':<16}{'count':>7}{'exact acc':>11}{'type acc':>10}{'type F1':>9}"
    rows = [header, "-" * len(header)]
    for kind, part in metrics.per_type.items():
        rows.append(
            f"{kind:<16}{part.count:>7}{part.exact_accuracy:>11.4f}"
            f"{part.type_accuracy:>10.4f}{part.f1:>9.4f}"
        )
    rows.append("-" * len(header))
    rows.append(
        f"{'all':<16}{metrics.count:>7}{metrics.exact_accuracy:>11.4f}"
        f"{metrics.type_accuracy:>10.4f}{metrics.type_macro_f1:>9.4f}  (macro-F1)"
    )
    rows.append(f"format valid: {metrics.format_valid_rate:.4f}")
    return "\n".join(rows)


def eval_stream(source: BinaryIO, errors: TextIO, config: RewardConfig) -> tuple[EvalMetrics, int]:
    """Section-6 metrics over every valid line; also the number of bad lines."""
    pairs = []
    bad = 0
    for number, entry in read_items(source):
        if isinstance(entry, tuple):
            bad += 1
            errors.write(f"line {number}: {entry[0]}: {entry[1]}\n")
            continue
        outcome = parse_completion(entry.completion, config.parse_mode, config.max_completion_chars)
        pairs.append((outcome, entry.ground_truth))
    return evaluate(pairs, config.similarity_threshold), bad


def _open_input(path: str) -> BinaryIO:
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def _cmd_score(args: argparse.Namespace) -> int:
    config = _config_from(args)
    with _open_input(args.input) as source:
        if args.output and args.output != "-":
            with open(args.output, "w", encoding="utf-8") as sink:
                bad = score_stream(source, sink, sys.stderr, config)
        else:
            bad = score_stream(source, sys.stdout, sys.stderr, config)
    return 1 if bad else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    config = _config_from(args)
    with _open_input(args.input) as source:
        metrics, bad = eval_stream(source, sys.stderr, config)
    print(json.dumps(metrics.as_dict()) if args.json else format_metrics(metrics))
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shop-r1-reward", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", help="score a JSONL file of completions")
    score.add_argument("input", help="JSONL file, or - for standard input")
    score.add_argument("-o", "--output", help="write results here (default: standard output)")
    _add_config_args(score)
    score.set_defaults(handler=_cmd_score)

    evaluation = commands.add_parser("eval", help="evaluation metrics of a JSONL file")
    evaluation.add_argument("input", help="JSONL file, or - for standard input")
    evaluation.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_config_args(evaluation)
    evaluation.set_defaults(handler=_cmd_eval)

    from reward_server.api.serve import add_serve_command

    add_serve_command(commands)
    from reward_server.ray_serve.cli import add_ray_command

    add_ray_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (OSError, ValueError) as exc:
        print(f"shop-r1-reward: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
