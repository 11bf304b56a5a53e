"""GenAI metrics of the LLM path, named after OpenTelemetry's GenAI semantic conventions
as Prometheus spells them (dots become underscores, the unit a suffix): one instance per
gateway, on its own CollectorRegistry that /metrics reads (no process-wide registry, so
any number of apps live in one process).

Recorded in two places only: when an attempt is settled (`_Attempt` in api.py: duration,
tokens, cost, time to first token, time per output token) and when the request ends (the
ConcurrencyLimit middleware calls `request_end`: requests by route and status class).
Every label value comes from the config (model groups, deployment ids, route names) or a
fixed set (operation names, API paths, status classes), so cardinality is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric

if TYPE_CHECKING:
    from routeiq.hostcalls.llm_exchange import LlmExchange
    from starlette.types import Scope

    from .deployments import LiveDeployment

# Bucket boundaries the conventions recommend for each instrument.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

RECORD_KEY = "routeiq.request_record"  # the scope key of a request's RequestRecord


@dataclass(eq=False)
class RequestRecord:
    """What one request's end needs to know, filled as it goes: created by the
    ConcurrencyLimit middleware, the route name set by the plugin filter, the model and
    the exchange (whose `outcome` names the deployment and tokens) by the LLM API."""

    method: str
    path: str
    route: str = ""  # the config route's name, else (LLM requests) the API path
    llm: bool = False  # a model-routed LLM request: counted in routeiq_llm_requests_total
    model: str = ""  # as the client asked (the access log); metrics only use known groups
    exchange: "LlmExchange | None" = None


def record_of(scope: "Scope") -> RequestRecord | None:
    return scope.get(RECORD_KEY)


def track(scope: "Scope", path: str, model: str, exchange: "LlmExchange | None") -> None:
    """The LLM API's one call per model-routed request: what the record needs from it."""
    record = scope.get(RECORD_KEY)
    if record is not None:
        record.llm = True
        record.route = record.route or path
        record.model = model
        record.exchange = exchange


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def provider_name(d: "LiveDeployment") -> str:
    """gen_ai.provider.name: the litellm provider prefix, else how the gateway calls it."""
    return d.kind if d.kind != "litellm" else str(d.litellm_params.get("model", "")).split("/", 1)[0]


@dataclass(frozen=True)
class _Series:
    duration: Any
    input_usage: Any
    output_usage: Any
    prompt: Any
    completion: Any
    cost: Any
    ttft: Any
    tpot: Any
    price: float


class LlmTelemetry:
    def __init__(self, models: frozenset[str] = frozenset()) -> None:
        self.models = models  # the groups (and the auto model): other names are labelled ""
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        op_labels = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model", "routeiq_deployment"]
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration: one deployment call (attempt), connect to last byte (gen_ai.client.operation.duration)",
            op_labels + ["error_type"],
            registry=r,
            buckets=DURATION_BUCKETS,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Input and output tokens per deployment call, as the deployment reported them (gen_ai.client.token.usage)",
            op_labels + ["gen_ai_token_type"],
            registry=r,
            buckets=TOKEN_BUCKETS,
        )
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Streams: from the start of the answering attempt to its first chunk being relayed (gen_ai.server.time_to_first_token)",
            op_labels,
            registry=r,
            buckets=TTFT_BUCKETS,
        )
        self.tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Streams that reported usage: (end - first chunk) / max(output tokens - 1, 1) (gen_ai.server.time_per_output_token)",
            op_labels,
            registry=r,
            buckets=TPOT_BUCKETS,
        )
        self.tokens = Counter("routeiq_llm_tokens", "Tokens by model group, deployment and type (prompt, completion)", ["model_group", "deployment", "token_type"], registry=r)
        self.cost = Counter("routeiq_llm_cost", "Cost in USD: tokens / 1000 x the deployment's model_info.cost_per_1k_tokens", ["model_group", "deployment"], registry=r)
        self._cache: dict[tuple[str, str, str, str], _Series] = {}  # bounded: every part comes from the config
        self.requests = Counter("routeiq_llm_requests", "Model-routed LLM requests by route, model group, answering deployment and status class", ["route", "model_group", "deployment", "status_class"], registry=r)

    def collect(self) -> Iterator[Metric]:
        return self.registry.collect()

    def _series(self, operation: str, requested: str, d: "LiveDeployment", error_type: str) -> "_Series":
        """The labelled children of one (operation, model, deployment, error) combination,
        made once: `labels()` takes a lock and builds a key per call, seven times per attempt."""
        key = (operation, requested, d.id, error_type)
        series = self._cache.get(key)
        if series is None:
            labels = (operation, provider_name(d), requested if requested in self.models else "", d.upstream_model, d.id)
            group = d.routing.model
            series = self._cache[key] = _Series(
                self.duration.labels(*labels, error_type),
                self.token_usage.labels(*labels, "input"),
                self.token_usage.labels(*labels, "output"),
                self.tokens.labels(group, d.id, "prompt"),
                self.tokens.labels(group, d.id, "completion"),
                self.cost.labels(group, d.id) if d.routing.cost_per_1k_tokens else None,
                self.ttft.labels(*labels),
                self.tpot.labels(*labels),
                d.routing.cost_per_1k_tokens,
            )
        return series

    def attempt_end(
        self, operation: str, requested: str, d: "LiveDeployment", began: float, end: float, first_chunk_at: float | None, error_type: str, usage: Mapping[str, Any] | None
    ) -> None:
        """One settled attempt (`error_type` "" when it answered)."""
        series = self._series(operation, requested if requested in self.models else "", d, error_type)
        series.duration.observe(end - began)
        output = 0
        if usage and ("prompt_tokens" in usage or "completion_tokens" in usage):
            prompt = int(usage.get("prompt_tokens") or 0)
            output = int(usage.get("completion_tokens") or 0)
            series.input_usage.observe(prompt)
            series.output_usage.observe(output)
            series.prompt.inc(prompt)
            series.completion.inc(output)
            if series.cost is not None:  # one price for both token types (ModelInfo has one)
                series.cost.inc((prompt + output) / 1000.0 * series.price)
        if first_chunk_at is not None:
            series.ttft.observe(first_chunk_at - began)
            if not error_type and output > 0:
                series.tpot.observe((end - first_chunk_at) / max(output - 1, 1))

    def request_end(self, record: RequestRecord, status: int) -> None:
        outcome = record.exchange.outcome if record.exchange is not None else None
        if outcome is not None:
            status = outcome.status  # a stream cut mid-way answered 200 but ended 502
        group = record.model if record.model in self.models else ""
        self.requests.labels(record.route, group, outcome.deployment if outcome is not None else "", status_class(status)).inc()
