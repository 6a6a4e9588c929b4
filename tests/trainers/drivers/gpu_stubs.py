"""Stand-ins for the GPU-only packages the trainers import at module level (vLLM,
DeepSpeed, flash-attn, bitsandbytes), installed into ``sys.modules`` before any trainer
import. They cannot run on CPU; the trainers' reward-calling code never calls them.

The vLLM stand-in is the generation engine of a rollout: :class:`ScriptedEngine` answers
each request with the next scripted completion (token ids from the real tokenizer), the
way ``vllm.AsyncLLMEngine.generate`` yields a ``RequestOutput``. Everything else a
trainer does with the completion (decoding, the reward request, the reply handling, the
experience batching) is the trainer's own code.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import itertools
import sys
import types
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

STUBBED = ("vllm", "deepspeed", "flash_attn", "bitsandbytes")


class _Anything(types.ModuleType):
    """A module whose every attribute is a further stand-in (class, function or module)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _Anything(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _Anything(f"{self.__name__}()")

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (object,)  # usable as a base class


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``deepspeed.runtime.zero...`` and the like to :class:`_Anything` modules."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _Anything(spec.name)
        module.__path__ = []  # a package: submodules resolve through this finder too
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


@dataclass
class CompletionOutput:
    token_ids: list[int]
    text: str
    finish_reason: str = "stop"
    logprobs: Any = None


@dataclass
class RequestOutput:
    outputs: list[CompletionOutput]
    prompt_token_ids: list[int] = field(default_factory=list)


class SamplingParams:
    """vLLM's sampling parameters as plain attributes (the trainer reads and copies them)."""

    def __init__(self, **kwargs: Any) -> None:
        self.max_tokens = None
        self.logprobs = None
        self.__dict__.update(kwargs)


class ScriptedEngine:
    """``vllm.AsyncLLMEngine``: each request gets ``answer(prompt_token_ids)``."""

    def __init__(self, answer: Callable[[list[int]], list[int]], decode: Callable) -> None:
        self.answer = answer
        self.decode = decode
        self.requests = 0

    async def generate(self, prompt: dict, params: Any, request_id: str) -> AsyncIterator:
        self.requests += 1
        ids = list(prompt["prompt_token_ids"])
        completion = self.answer(ids)
        finish = "stop"
        if params.max_tokens is not None and len(completion) > params.max_tokens:
            completion, finish = completion[: params.max_tokens], "length"
        output = CompletionOutput(completion, self.decode(completion), finish)
        yield RequestOutput([output], ids)

    async def is_sleeping(self) -> bool:
        return False


def install(engine: ScriptedEngine | None = None) -> None:
    """Put the stand-ins in place (idempotent); ``engine`` is what
    ``vllm.AsyncLLMEngine.from_engine_args`` returns."""
    if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _StubFinder())
    vllm = importlib.import_module("vllm")  # the stand-ins
    inputs = importlib.import_module("vllm.inputs")
    utils = importlib.import_module("vllm.utils")

    vllm.__version__ = "0.29.0"  # the release OpenRLHF 0.11 pins
    vllm.SamplingParams = SamplingParams
    vllm.AsyncEngineArgs = lambda *args, **kwargs: (args, kwargs)
    vllm.AsyncLLMEngine = types.SimpleNamespace(from_engine_args=lambda _args: engine)
    inputs.TokensPrompt = dict
    counter = itertools.count()
    utils.random_uuid = lambda: f"{next(counter)}-{uuid.uuid4().hex}"
