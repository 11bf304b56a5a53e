"""Metric host calls: proxy_define_metric, proxy_increment_metric, proxy_record_metric,
proxy_get_metric."""

from __future__ import annotations

from .group import CallGroup


class MetricCalls(CallGroup):
    def proxy_define_metric(self, kind: int, name: str) -> tuple[int, int]:
        env = self.env
        return env.services.metrics.define(env.plugin.name, kind, name)

    def proxy_increment_metric(self, metric_id: int, delta: int) -> int:
        env = self.env
        return env.services.metrics.increment(env.plugin.name, metric_id, delta)

    def proxy_record_metric(self, metric_id: int, value: int) -> int:
        env = self.env
        return env.services.metrics.record(env.plugin.name, metric_id, value & 0xFFFFFFFFFFFFFFFF)

    def proxy_get_metric(self, metric_id: int) -> tuple[int, int]:
        env = self.env
        return env.services.metrics.get(env.plugin.name, metric_id)
