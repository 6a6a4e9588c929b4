"""OpenRLHF 0.11's own ``train_ppo_ray`` command line, parsed and validated by its own
``__main__`` code, stopping where training would start.

    python openrlhf_args.py OUT.json -- ARGS...

The module runs as ``__main__`` (argparse, ``hierarchize`` and every check that follows);
its first step of training, ``get_strategy`` (DeepSpeed), is replaced by a function that
records the parsed arguments and stops, and Ray is reported as already started so that
no cluster is launched. OUT: the parsed values a test compares, or the parser's error.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys

import gpu_stubs


class Parsed(Exception):
    """Raised instead of training, carrying the arguments OpenRLHF would train with."""


def _record(args):
    raise Parsed(args)


def main(out_path: str, argv: list[str]) -> None:
    gpu_stubs.install()
    import openrlhf.utils
    import ray

    openrlhf.utils.get_strategy = _record
    ray.is_initialized = lambda: True
    sys.argv = ["openrlhf.cli.train_ppo_ray", *argv]
    errors = io.StringIO()
    out: dict = {}
    try:
        with contextlib.redirect_stderr(errors):
            runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__")
    except Parsed as parsed:
        args = parsed.args[0]
        out = {
            "remote_url": args.reward.remote_url,
            "label_key": args.data.label_key,
            "input_key": args.data.input_key,
            "prompt_dataset": args.data.prompt_dataset,
            "apply_chat_template": args.data.apply_chat_template,
            "estimator": args.algo.advantage.estimator,
            "n_samples_per_prompt": args.rollout.n_samples_per_prompt,
            "temperature": args.rollout.temperature,
            "clip_range": list(args.reward.clip_range),
            "max_len": args.data.max_len,
            "max_new_tokens": args.rollout.max_new_tokens,
            "model": args.actor.model_name_or_path,
        }
    except SystemExit as exit_:
        out = {"exit": exit_.code, "stderr": errors.getvalue()[-2000:]}
    with open(out_path, "w", encoding="utf-8") as sink:
        json.dump(out, sink)


if __name__ == "__main__":
    separator = sys.argv.index("--")
    main(sys.argv[1], sys.argv[separator + 1 :])
