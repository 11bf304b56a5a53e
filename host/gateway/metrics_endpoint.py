"""GET /metrics: Prometheus text for the gateway and for metrics plugins define."""

from __future__ import annotations

from typing import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from routeiq.abi.proxy_wasm import MetricType
from routeiq.dispatch.hook_stats import LatencyHistogram
from routeiq.hostcalls.state import HostServices
from routeiq.identity.authenticator import KeyAuthenticator
from routeiq.llm.router import LlmRouter
from routeiq.llm.telemetry import LlmTelemetry
from routeiq.services.breakers import BreakerBoard
from routeiq.services.plugin_metrics import HISTOGRAM_BUCKETS, PluginMetric, prometheus_name

from .plugin_set import PluginSet

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayCollector(Collector):
    """Reads the gateway's own counters at scrape time (nothing is double-booked)."""

    def __init__(
        self,
        plugins: PluginSet,
        services: HostServices,
        breakers: BreakerBoard,
        request_latency: LatencyHistogram,
        router: LlmRouter | None,
        llm: LlmTelemetry | None = None,
        keys: KeyAuthenticator | None = None,
    ) -> None:
        self.plugins = plugins
        self.services = services
        self.breakers = breakers
        self.request_latency = request_latency
        self.router = router
        self.llm = llm  # the GenAI metrics, on the LLM path's own registry
        self.keys = keys  # virtual keys (keys.enabled): this node's charges and refusals

    def collect(self) -> Iterator[Metric]:
        traps = CounterMetricFamily("routeiq_plugin_traps", "Guest traps, by plugin and kind", labels=["plugin", "kind"])
        starts = CounterMetricFamily("routeiq_plugin_vm_starts", "Plugin VMs started (first start and every replacement)", labels=["plugin"])
        ready = GaugeMetricFamily("routeiq_plugin_ready", "1 when the plugin has a live VM", labels=["plugin"])
        quarantines = CounterMetricFamily("routeiq_plugin_quarantines", "Times a plugin was quarantined", labels=["plugin"])
        quarantined = GaugeMetricFamily("routeiq_plugin_quarantined", "1 while the plugin is quarantined", labels=["plugin"])
        latency = HistogramMetricFamily("routeiq_plugin_callback_seconds", "Plugin callback latency", labels=["plugin", "callback"])
        for plugin in self.plugins.all():
            quarantines.add_metric([plugin.spec.name], plugin.stats.quarantines)
            quarantined.add_metric([plugin.spec.name], 1 if plugin.quarantined else 0)
            for callback, stats in plugin.hooks.folded().items():
                latency.add_metric([plugin.spec.name, callback], stats.histogram.buckets(), stats.histogram.sum_s)
            for kind, count in plugin.stats.traps_by_kind.items():
                traps.add_metric([plugin.spec.name, kind], count)
            starts.add_metric([plugin.spec.name], plugin.stats.vm_starts)
            ready.add_metric([plugin.spec.name], 1 if plugin.state == "ready" else 0)
        yield from (traps, starts, ready, quarantines, quarantined, latency)
        requests = HistogramMetricFamily("routeiq_request_seconds", "Request latency through the gateway (all routes but /health and /metrics)")
        requests.add_metric([], self.request_latency.buckets(), self.request_latency.sum_s)
        yield requests

        denials = CounterMetricFamily("routeiq_hostcall_denials", "Host calls refused by policy", labels=["plugin", "call", "reason"])
        for (plugin_name, call, reason), count in self.services.audit.counts.items():
            denials.add_metric([plugin_name, call, reason], count)
        yield denials

        callouts = self.services.callouts
        yield CounterMetricFamily("routeiq_callouts_started", "HTTP callouts started by plugins", value=callouts.started)
        yield CounterMetricFamily("routeiq_callouts_failed", "HTTP callouts that failed or timed out", value=callouts.failed)
        kv = CounterMetricFamily("routeiq_kv_operations", "Shared data operations by plugin", labels=["plugin", "op"])
        for (plugin_name, op), count in self.services.kv_ops.items():
            kv.add_metric([plugin_name, op], count)
        yield kv

        states = GaugeMetricFamily("routeiq_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)", labels=["breaker"])
        transitions = CounterMetricFamily("routeiq_breaker_transitions", "Circuit breaker state changes", labels=["breaker", "from", "to"])
        for breaker in self.breakers.all():
            states.add_metric([breaker.name], {"closed": 0, "half_open": 1, "open": 2}[breaker.state])
            for (old, new), count in breaker.transitions.items():
                transitions.add_metric([breaker.name, old, new], count)
        yield from (states, transitions)
        router = self.router
        if router is not None:
            yield CounterMetricFamily("routeiq_routing_decisions", "Routing decisions made", value=router.decisions)
            yield CounterMetricFamily("routeiq_routing_fallbacks", "Requests retried on another deployment", value=router.fallbacks)
        if self.llm is not None:
            yield from self.llm.collect()
        if self.keys is not None:
            yield from key_metric_families(self.keys)

        yield from plugin_metric_families(self.services.metrics.all())


def key_metric_families(keys: KeyAuthenticator) -> Iterator[Metric]:
    """What this node charged (SpendLedger.charged, as accepted: written or still on its
    way to the database), by team, key alias (else the start of its sha256) and model
    group; and requests the front door refused, by code. Per node: sum them across nodes."""
    labels = ["team", "key_alias", "model_group"]
    spend = CounterMetricFamily("routeiq_key_spend_dollars", "Spend charged to virtual keys on this node", labels=labels)
    requests = CounterMetricFamily("routeiq_key_requests", "Answered requests charged to virtual keys on this node", labels=labels)
    tokens = CounterMetricFamily("routeiq_key_tokens", "Tokens charged to virtual keys on this node", labels=[*labels, "kind"])
    for (team, alias, group), (cost, prompt, completion, count) in list(keys.ledger.charged.items()):
        spend.add_metric([team, alias, group], cost)
        requests.add_metric([team, alias, group], count)
        tokens.add_metric([team, alias, group, "prompt"], prompt)
        tokens.add_metric([team, alias, group, "completion"], completion)
    refused = CounterMetricFamily("routeiq_key_refusals", "Requests refused by virtual-key authentication, by code", labels=["code"])
    for code, count in list(keys.refused.items()):
        refused.add_metric([code], count)
    yield from (spend, requests, tokens, refused)


def plugin_metric_families(metrics: list[PluginMetric]) -> Iterator[Metric]:
    """One Prometheus family per plugin metric name with its tags cut out: metrics whose
    names differ only in their tags are its samples, the tags their labels (a label a
    sample lacks is empty, i.e. absent). A metric of another kind than the family's first
    keeps its whole name."""
    families: dict[str, list[PluginMetric]] = {}
    for metric in metrics:
        name = prometheus_name(metric.plugin, metric.family or metric.name)
        members = families.setdefault(name, [])
        if members and members[0].kind != metric.kind:
            families.setdefault(prometheus_name(metric.plugin, metric.name), []).append(metric)
        else:
            members.append(metric)
    for name, members in families.items():
        first = members[0]
        labels = list(dict.fromkeys(tag for m in members for tag, _ in m.tags))
        help_text = f"{first.family or first.name} (defined by plugin {first.plugin})"
        family: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
        if first.kind == MetricType.COUNTER:
            family = CounterMetricFamily(name, help_text, labels=labels)
        elif first.kind == MetricType.GAUGE:
            family = GaugeMetricFamily(name, help_text, labels=labels)
        else:
            family = HistogramMetricFamily(name, help_text, labels=labels)
        for metric in members:
            values = dict(metric.tags)
            label_values = [values.get(label, "") for label in labels]
            if metric.kind == MetricType.HISTOGRAM:
                # PluginMetrics keeps buckets cumulative already, as Prometheus wants them.
                cumulative = [(str(bound), count) for bound, count in zip(HISTOGRAM_BUCKETS, metric.buckets)]
                cumulative.append(("+Inf", metric.count))
                family.add_metric(label_values, cumulative, metric.total)  # type: ignore[call-arg]
            else:
                family.add_metric(label_values, metric.value)
        yield family


def metrics_endpoint(collector: GatewayCollector, *more: Collector) -> Callable[[Request], Awaitable[Response]]:
    """`more`: collectors of parts above this layer (the MCP tools)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    for extra in more:
        registry.register(extra)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)

    return metrics
