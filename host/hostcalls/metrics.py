"""Metric host calls: proxy_define_metric, proxy_increment_metric, proxy_record_metric,
proxy_get_metric."""

from __future__ import annotations

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import Status

from .state import HostEnv


class MetricCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def proxy_define_metric(self, kind: int, name: int, name_size: int, ret_id: int) -> int:
        env = self.env
        raw = env.vm.read(name, name_size)
        env.vm.check_writable((ret_id, 4))
        denied = env.require("proxy_define_metric", Capability.METRICS)
        if denied is not None:
            return denied
        status, metric_id = env.services.metrics.define(env.plugin.name, kind, raw.decode("utf-8", "replace"))
        if status == Status.OK:
            env.vm.write_u32(ret_id, metric_id)
        return status

    def proxy_increment_metric(self, metric_id: int, delta: int) -> int:
        env = self.env
        denied = env.require("proxy_increment_metric", Capability.METRICS)
        if denied is not None:
            return denied
        return env.services.metrics.increment(env.plugin.name, metric_id, delta)

    def proxy_record_metric(self, metric_id: int, value: int) -> int:
        env = self.env
        denied = env.require("proxy_record_metric", Capability.METRICS)
        if denied is not None:
            return denied
        return env.services.metrics.record(env.plugin.name, metric_id, value & 0xFFFFFFFFFFFFFFFF)

    def proxy_get_metric(self, metric_id: int, ret_value: int) -> int:
        env = self.env
        env.vm.check_writable((ret_value, 8))
        denied = env.require("proxy_get_metric", Capability.METRICS)
        if denied is not None:
            return denied
        status, value = env.services.metrics.get(env.plugin.name, metric_id)
        if status == Status.OK:
            env.vm.write_u64(ret_value, value)
        return status
