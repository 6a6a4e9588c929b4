"""A Prometheus histogram that takes a whole batch of observations in one update.

``prometheus_client.Histogram.observe`` takes two locks and scans the bucket bounds in
Python for every value: about 2 µs, more than scoring an item, and the service records
several values per item. A :class:`BatchedHistogram` counts a batch per bucket first
(``bisect`` over the bounds, values counted once each) and then adds each bucket's count
and the batch's sum with one increment each.

It is built on prometheus_client's public extension points only: its series are held in
``prometheus_client.values.ValueClass`` cells, the same cells a ``Histogram`` uses (mmap
files shared across worker processes in multiprocess mode, which the library's
``MultiProcessCollector`` merges like any histogram), and a single process exposes them
through a custom collector (``HistogramMetricFamily``). Series: ``NAME_bucket{le}``
(cumulative), ``NAME_count`` and ``NAME_sum``, as Prometheus expects of a histogram.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from prometheus_client.values import ValueClass


class BatchedHistogramChild:
    """The series of one label set; :meth:`observe_many` is the only way in."""

    def __init__(self, name: str, doc: str, labelnames: tuple[str, ...],
                 labelvalues: tuple[str, ...], bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.labelvalues = labelvalues
        bucket_labels = (*labelnames, "le")
        self.buckets = [
            ValueClass("histogram", name, name + "_bucket", bucket_labels,
                       (*labelvalues, floatToGoString(bound)), doc)
            for bound in bounds
        ]
        self.sum = ValueClass("histogram", name, name + "_sum", labelnames, labelvalues, doc)

    def observe_many(self, values: Sequence[float]) -> None:
        """Add every value: each lands in the first bucket whose bound is >= the value,
        as with ``Histogram.observe``. Non-finite values are left out: one ``inf`` would
        make the series' sum infinite until the process restarts.
        """
        finite = [value for value in values if math.isfinite(value)]
        if not finite:
            return
        per_bucket: Counter[int] = Counter()
        # Counted by value first (in C): a batch holds few distinct component values.
        for value, count in Counter(finite).items():
            per_bucket[bisect_left(self.bounds, value)] += count
        for index, count in per_bucket.items():
            self.buckets[index].inc(count)
        self.sum.inc(math.fsum(finite))


class BatchedHistogram(Collector):
    """A histogram family with labels, registered like any metric (see the module doc)."""

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = (),
                 buckets: Sequence[float] = (), registry: CollectorRegistry | None = REGISTRY
                 ) -> None:
        bounds = [float(bound) for bound in buckets]
        if not bounds or bounds != sorted(bounds):
            raise ValueError("buckets must be a non-empty sorted sequence")
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(bounds)
        self._children: dict[tuple[str, ...], BatchedHistogramChild] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def labels(self, *labelvalues: str) -> BatchedHistogramChild:
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labelvalues}")
        with self._lock:
            found = self._children.get(labelvalues)
            if found is None:
                found = self._children[labelvalues] = BatchedHistogramChild(
                    self.name, self.documentation, self.labelnames, labelvalues, self.bounds
                )
            return found

    def observe_many(self, values: Sequence[float]) -> None:
        """For a family without labels."""
        self.labels().observe_many(values)

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            children = list(self._children.values())
        for child in children:
            cumulative = 0.0
            buckets = []
            for bound, cell in zip(self.bounds, child.buckets, strict=True):
                cumulative += cell.get()
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric(list(child.labelvalues), buckets, child.sum.get())
        yield family
