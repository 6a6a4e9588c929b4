"""Reward configuration: paper defaults, validation, a stable hash
that changes with any field, overrides and profiles."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from reward_server.config import PROFILES, RewardConfig, load_config

FLOAT_FIELDS = [
    "format_weight",
    "type_weight",
    "click_name_presence",
    "type_name_presence",
    "type_text_presence",
    "name_similarity_weight",
    "dars",
    "similarity_threshold",
    "alpha",
    "exact_action_weight",
    "temperature",
]


def test_every_float_setting_is_bounded() -> None:
    """The bounds are what rule out NaN and infinities (every comparison with NaN fails),
    so a float setting without both bounds would let them through."""
    floats = {n for n, f in RewardConfig.model_fields.items() if f.annotation is float}
    assert floats == set(FLOAT_FIELDS)
    for name in floats:
        kinds = {type(m).__name__ for m in RewardConfig.model_fields[name].metadata}
        assert {"Ge", "Le"} <= kinds, name


def test_paper_profile_defaults() -> None:
    """Every number of REWARD_CONTRACT.md §2-§4 is the default."""
    config = RewardConfig()
    assert config == PROFILES["paper"]
    assert (
        config.format_weight,
        config.type_weight,
        config.click_name_presence,
        config.type_name_presence,
        config.type_text_presence,
        config.name_similarity_weight,
    ) == (0.5, 0.3, 0.2, 0.1, 0.1, 0.1)
    assert config.dars == 1000.0
    assert config.similarity_threshold == 0.75
    assert config.alpha == 0.005
    assert config.temperature == 1.0
    assert config.certainty_kind == "kl_uniform"
    assert config.parse_mode == "strict"
    assert config.max_completion_chars > 0


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rejected(field: str, bad: float) -> None:
    with pytest.raises(ValidationError) as info:
        RewardConfig(**{field: bad})
    assert field in str(info.value)


@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_negative_rejected(field: str) -> None:
    with pytest.raises(ValidationError):
        RewardConfig(**{field: -0.001})


@pytest.mark.parametrize("bad", [-0.01, 1.0001, 2.0])
def test_threshold_range(bad: float) -> None:
    with pytest.raises(ValidationError):
        RewardConfig(similarity_threshold=bad)


@pytest.mark.parametrize("good", [0.0, 0.5, 1.0])
def test_threshold_bounds_accepted(good: float) -> None:
    assert RewardConfig(similarity_threshold=good).similarity_threshold == good


def test_other_field_validation() -> None:
    with pytest.raises(ValidationError):
        RewardConfig(temperature=0.0)
    with pytest.raises(ValidationError):
        RewardConfig(max_completion_chars=0)
    with pytest.raises(ValidationError):
        RewardConfig(parse_mode="sloppy")
    with pytest.raises(ValidationError):
        RewardConfig(certainty_kind="entropy")
    with pytest.raises(ValidationError):
        RewardConfig(dars_scale=2.0)  # unknown field
    config = RewardConfig()
    with pytest.raises(ValidationError):
        config.dars = 1.0  # frozen


def test_hash_is_stable_and_16_hex() -> None:
    first = RewardConfig().config_hash()
    assert first == RewardConfig().config_hash()
    assert len(first) == 16 and int(first, 16) >= 0
    # Field order of construction does not matter.
    a = RewardConfig(dars=10.0, alpha=0.01)
    b = RewardConfig(alpha=0.01, dars=10.0)
    assert a.config_hash() == b.config_hash()
    # An int given for a float field hashes the same as the float.
    assert RewardConfig(dars=1000).config_hash() == first


def test_hash_is_stable_across_processes() -> None:
    code = "from reward_server.config import RewardConfig; print(RewardConfig().config_hash())"
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert out.stdout.strip() == RewardConfig().config_hash()


CHANGES = {
    "format_weight": 0.6,
    "type_weight": 0.4,
    "click_name_presence": 0.25,
    "type_name_presence": 0.15,
    "type_text_presence": 0.05,
    "name_similarity_weight": 0.2,
    "dars": 999.0,
    "similarity_threshold": 0.8,
    "alpha": 0.01,
    "certainty_kind": "kl_to_uniform",
    "temperature": 0.6,
    "parse_mode": "lenient",
    "max_completion_chars": 1000,
    "action_reward": "binary",
    "exact_action_weight": 2.0,
}


def test_changes_cover_every_field() -> None:
    assert set(CHANGES) == set(RewardConfig.model_fields)


@pytest.mark.parametrize(("field", "value"), sorted(CHANGES.items()))
def test_hash_changes_with_any_field(field: str, value: object) -> None:
    base = RewardConfig()
    changed = base.with_overrides({field: value})
    assert getattr(changed, field) == value
    assert changed.config_hash() != base.config_hash()


def test_all_single_field_hashes_distinct() -> None:
    hashes = {RewardConfig().with_overrides({k: v}).config_hash() for k, v in CHANGES.items()}
    assert len(hashes) == len(CHANGES)


def test_overrides() -> None:
    base = RewardConfig()
    assert base.with_overrides(None) is base
    assert base.with_overrides({}) is base
    no_dars = base.with_overrides({"dars": 1.0})
    assert no_dars == PROFILES["no_dars"]
    assert no_dars.config_hash() == PROFILES["no_dars"].config_hash()
    assert base.dars == 1000.0  # original untouched
    with pytest.raises(ValidationError):
        base.with_overrides({"unknown_field": 1})
    with pytest.raises(ValidationError):
        base.with_overrides({"dars": math.nan})
    with pytest.raises(ValidationError):
        base.with_overrides({"similarity_threshold": 1.5})


def test_load_config(tmp_path: Path) -> None:
    assert load_config() == RewardConfig()
    assert load_config("no_dars").dars == 1.0
    with pytest.raises(ValueError, match="unknown reward profile"):
        load_config("nope")
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps({"dars": 500.0, "parse_mode": "lenient"}))
    loaded = load_config("paper", str(path))
    assert (loaded.dars, loaded.parse_mode, loaded.alpha) == (500.0, "lenient", 0.005)
    path.write_text("[1]")
    with pytest.raises(ValueError):
        load_config("paper", str(path))
    path.write_text(json.dumps({"alpha": -1}))
    with pytest.raises(ValueError):
        load_config("paper", str(path))
