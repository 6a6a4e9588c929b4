"""BatchedHistogram exposes exactly what prometheus_client's Histogram exposes for the same
observations, and never lets a non-finite value into a series."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from reward_server.batched_histogram import BatchedHistogram
from reward_server.telemetry import COMPONENT_BUCKETS

BOUNDS = COMPONENT_BUCKETS
finite = st.floats(min_value=-10.0, max_value=2000.0, allow_nan=False) | st.sampled_from(BOUNDS)


def exposition(registry: CollectorRegistry) -> dict[str, float]:
    samples = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(finite, max_size=50), max_size=5))
def test_same_series_as_prometheus_histogram(batches: list[list[float]]) -> None:
    ours, reference = CollectorRegistry(), CollectorRegistry()
    batched = BatchedHistogram("h", "doc", ["component"], buckets=BOUNDS, registry=ours)
    plain = Histogram("h", "doc", ["component"], buckets=BOUNDS, registry=reference)
    for batch in batches:
        batched.labels("value").observe_many(batch)
        child = plain.labels("value")
        for value in batch:
            child.observe(value)
    expected = exposition(reference)
    got = exposition(ours)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-12, abs_tol=1e-9), key


def test_non_finite_values_never_reach_a_series() -> None:
    registry = CollectorRegistry()
    histogram = BatchedHistogram("h", "doc", buckets=BOUNDS, registry=registry)
    histogram.observe_many([1.0, math.inf, -math.inf, math.nan, 2.0])
    text = generate_latest(registry).decode()
    assert "h_sum 3.0" in text
    assert 'h_bucket{le="+Inf"} 2.0' in text
    assert "h_count 2.0" in text
