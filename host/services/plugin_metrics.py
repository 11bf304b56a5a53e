"""Metrics plugins define with proxy_define_metric, kept per plugin across VM restarts.

Tags in a metric's name become labels as Envoy's stats tag extraction makes them
(`stats_config.stats_tags`, TagExtractorStdRegexImpl): each rule's regex is searched in
the name as defined; the first capture group is cut out of the name, the second (or the
first, when there is one group) is the tag's value. Every rule looks at the whole name,
and what each matched is removed afterwards, so rules do not depend on their order. A
rule with `fixed_value` instead adds that tag to every plugin metric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from routeiq.abi.proxy_wasm import MetricType, Status

HISTOGRAM_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000)
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_name(plugin: str, name: str) -> str:
    return "routeiq_plugin_" + _INVALID.sub("_", plugin) + "_" + _INVALID.sub("_", name)


@dataclass(frozen=True)
class TagRule:
    """One stats tag rule: `regex` (one or two capture groups) or `fixed_value`."""

    name: str
    regex: re.Pattern[str] | None = None
    fixed_value: str | None = None


Tags = tuple[tuple[str, str], ...]


def extract_tags(name: str, rules: Sequence[TagRule]) -> tuple[str, Tags]:
    """(the name with every matched first group removed, the tags in rule order)."""
    tags: list[tuple[str, str]] = []
    cut: list[tuple[int, int]] = []
    for rule in rules:
        if rule.regex is None:
            tags.append((rule.name, rule.fixed_value or ""))
            continue
        match = rule.regex.search(name)
        if match is None:
            continue
        value = match.group(2 if rule.regex.groups >= 2 else 1)
        tags.append((rule.name, value or ""))
        cut.append(match.span(1))
    if not cut:
        return name, tuple(tags)
    kept = [ch for i, ch in enumerate(name) if not any(start <= i < end for start, end in cut)]
    return "".join(kept) or name, tuple(tags)


@dataclass
class PluginMetric:
    plugin: str
    name: str
    kind: MetricType
    family: str = ""  # the name with its tags cut out (the name itself without tag rules)
    tags: Tags = ()
    value: int = 0  # counter / gauge
    count: int = 0  # histogram
    total: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(HISTOGRAM_BUCKETS))


class PluginMetrics:
    def __init__(self, tag_rules: Sequence[TagRule] = ()) -> None:
        self.tag_rules = tuple(tag_rules)
        self._by_id: dict[int, PluginMetric] = {}
        self._by_name: dict[tuple[str, str], int] = {}

    def define(self, plugin: str, kind: int, name: str) -> tuple[Status, int]:
        try:
            metric_type = MetricType(kind)
        except ValueError:
            return Status.BAD_ARGUMENT, 0
        if not name:
            return Status.BAD_ARGUMENT, 0
        existing = self._by_name.get((plugin, name))
        if existing is not None:
            if self._by_id[existing].kind != metric_type:
                return Status.BAD_ARGUMENT, 0
            return Status.OK, existing
        metric_id = len(self._by_id) + 1
        family, tags = extract_tags(name, self.tag_rules)
        self._by_id[metric_id] = PluginMetric(plugin, name, metric_type, family, tags)
        self._by_name[(plugin, name)] = metric_id
        return Status.OK, metric_id

    def _own(self, plugin: str, metric_id: int) -> PluginMetric | None:
        metric = self._by_id.get(metric_id)
        return metric if metric is not None and metric.plugin == plugin else None

    def increment(self, plugin: str, metric_id: int, delta: int) -> Status:
        metric = self._own(plugin, metric_id)
        if metric is None:
            return Status.NOT_FOUND
        if metric.kind == MetricType.HISTOGRAM or (metric.kind == MetricType.COUNTER and delta < 0):
            return Status.BAD_ARGUMENT
        metric.value = max(0, metric.value + delta)
        return Status.OK

    def record(self, plugin: str, metric_id: int, value: int) -> Status:
        metric = self._own(plugin, metric_id)
        if metric is None:
            return Status.NOT_FOUND
        if metric.kind == MetricType.HISTOGRAM:
            metric.count += 1
            metric.total += value
            for i, bound in enumerate(HISTOGRAM_BUCKETS):
                if value <= bound:
                    metric.buckets[i] += 1
            return Status.OK
        if metric.kind == MetricType.COUNTER and value < metric.value:
            return Status.BAD_ARGUMENT  # counters never go down
        metric.value = value
        return Status.OK

    def get(self, plugin: str, metric_id: int) -> tuple[Status, int]:
        metric = self._own(plugin, metric_id)
        if metric is None:
            return Status.NOT_FOUND, 0
        if metric.kind == MetricType.HISTOGRAM:
            return Status.OK, metric.count
        return Status.OK, metric.value

    def all(self) -> list[PluginMetric]:
        return list(self._by_id.values())
