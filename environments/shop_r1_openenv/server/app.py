"""The Shop-R1 OpenEnv server: OpenEnv's own app factory over :class:`ShopR1Environment`.

Endpoints are OpenEnv's (``/ws`` sessions for ``EnvClient``, ``/reset``, ``/step``,
``/state``, ``/schema``, ``/health``, ``/metadata``). Start it with one command::

    shop-r1-openenv --port 8001                   # or: python -m shop_r1_openenv.server.app
    shop-r1-openenv --reward-url http://127.0.0.1:8000 --split test

Every option is also an environment variable (``--reward-url`` is ``SHOP_R1_REWARD_URL``,
``--split`` is ``SHOP_R1_OPENENV_SPLIT``, ...; see ``--help``), which is how the Docker
image (``server/Dockerfile``) and ``uvicorn shop_r1_openenv.server.app:app`` are set up.
Without a reward URL the rules core scores in the server's process. Run it as the
installed package, not from this folder: there OpenEnv's ``client.py`` would stand in
for the project's ``client`` package that the scorer imports.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from functools import partial
from typing import Any

from openenv.core.env_server.http_server import create_app
from shop_r1_env import ScorerSettings, ScoringFields, TaskFields, TaskSource, make_scorer
from shop_r1_env.rows import build

from ..models import ShopR1Action, ShopR1Observation
from .shop_r1_environment import EpisodeBook, ShopR1Environment

ENV_NAME = "shop_r1"

# option -> (environment variable, type, help). The task and scoring options are the
# fields of shop_r1_env's TaskFields and ScoringFields, whose defaults they take.
OPTIONS: dict[str, tuple[str, Any, str]] = {
    "host": ("SHOP_R1_OPENENV_HOST", str, "address to bind (default 127.0.0.1)"),
    "port": ("SHOP_R1_OPENENV_PORT", int, "port to bind (default 8001)"),
    "split": ("SHOP_R1_OPENENV_SPLIT", str, "episodes of the task's train or test split"),
    "max_sessions": ("SHOP_R1_OPENENV_MAX_SESSIONS", int, "concurrent sessions"),
    "history": ("SHOP_R1_OPENENV_HISTORY", str, "'full', 'latest' or a number"),
    "distractors": ("SHOP_R1_OPENENV_DISTRACTORS", int, "distractor elements per page"),
    "seed": ("SHOP_R1_OPENENV_SEED", int, "seed of the split and the pages"),
    "test_fraction": ("SHOP_R1_OPENENV_TEST_FRACTION", float, "share of test episodes"),
    "steps_path": ("SHOP_R1_OPENENV_STEPS_PATH", str, "recorded steps (JSONL)"),
    "reward_url": ("SHOP_R1_REWARD_URL", str, "reward service URL(s); unset: in-process"),
    "api_key": ("SHOP_R1_API_KEY", str, "the reward service's API key"),
    "self_certainty_source": ("SHOP_R1_SELF_CERTAINTY_SOURCE", str, "model/provided/none"),
    "reward_profile": ("SHOP_R1_REWARD_PROFILE", str, "reward profile (paper, binary, ...)"),
    "reward_config": ("SHOP_R1_REWARD_CONFIG", str, "JSON object of reward overrides"),
    "reward_timeout": ("SHOP_R1_REWARD_TIMEOUT", float, "seconds per scoring call"),
    "reward_max_attempts": ("SHOP_R1_REWARD_MAX_ATTEMPTS", int, "attempts per scoring call"),
}
DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1", "port": 8001, "split": "train", "max_sessions": 64,
    **{name: field.default for name, field in TaskFields.model_fields.items()},
    **{name: field.default for name, field in ScoringFields.model_fields.items()},
}


def parse_options(argv: list[str] | None = None, environ: Mapping[str, str] | None = None):
    """The server's options: flags, else their environment variables, else defaults."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="shop-r1-openenv", description=__doc__.split("\n")[0])
    for name, (variable, kind, text) in OPTIONS.items():
        raw = environ.get(variable) or None
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=DEFAULTS[name] if raw is None else kind(raw),
            help=f"{text} (${variable})",
        )
    return parser.parse_args(argv)


def build_app(options: argparse.Namespace):
    """The FastAPI app: the split's episodes and one scorer, shared by every session."""
    given = vars(options)
    if given["history"] not in ("full", "latest"):
        given = {**given, "history": int(given["history"])}
    source = TaskSource(**{name: given[name] for name in TaskFields.model_fields})
    settings = ScorerSettings(**{name: given[name] for name in ScoringFields.model_fields})
    book = EpisodeBook(build(source).episodes(options.split), options.split)
    return create_app(
        partial(ShopR1Environment, book, make_scorer(settings)),
        ShopR1Action,
        ShopR1Observation,
        env_name=ENV_NAME,
        max_concurrent_envs=options.max_sessions,
    )


def __getattr__(name: str):
    # `uvicorn shop_r1_openenv.server.app:app` (and the Docker image): the app built from
    # the environment variables on first access, not on import.
    if name == "app":
        app = build_app(parse_options([]))
        globals()["app"] = app
        return app
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``shop-r1-openenv`` / ``python -m shop_r1_openenv.server.app``."""
    import uvicorn

    options = parse_options(argv)
    uvicorn.run(build_app(options), host=options.host, port=options.port)


if __name__ == "__main__":
    main()
