"""The gateway's configuration file: schema, defaults, and errors that name file and field.

Every setting carries its meaning in `Field(description=...)`: docs/configuration.md's
reference is generated from these models (`routeiq docs-config`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from routeiq import litellm_settings
from routeiq.abi.proxy_wasm import LogLevel
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.distribution.oci import OciError, fetch_module, is_oci, parse_ref
from routeiq.policy.model import PolicyError, PolicyModel, load_policy, parse_policy
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.limits import SandboxLimits
from routeiq.services.clusters import Cluster, ClusterSettingError, split_endpoint
from routeiq.services.plugin_metrics import TagRule


log = logging.getLogger("routeiq.config")


class ConfigError(Exception):
    """A configuration problem, phrased for the operator: file, field, what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


LOG_LEVELS = Literal["trace", "debug", "info", "warn", "error", "critical"]


class ServerConfig(_Strict):
    host: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(8080, ge=0, le=65535, description="Listen port (`serve --port` overrides).")
    workers: int = Field(1, ge=1, le=64, description="Worker processes (`serve --workers N` overrides).")
    log_level: LOG_LEVELS = Field("info", description="Gateway log level; also the default `proxy_get_log_level` of every plugin.")
    log_format: Literal["text", "json"] = Field("text", description="`json`: one object per line, with trace ids, secrets scrubbed.")
    access_log: bool = Field(
        True,
        description=(
            "One line per request on logger `routeiq.access` (INFO; not /health or /metrics): method, path, status, latency_ms, request_id, "
            "and for model-routed LLM requests model, deployment, prompt_tokens, completion_tokens. With `log_format: json` these are keys of the line's object."
        ),
    )
    max_concurrency: int = Field(0, ge=0, description="Requests in flight per worker before answering 503 with Retry-After (0: no limit). /health and /metrics are never shed.")
    drain_timeout_s: float = Field(30.0, ge=0, description="On SIGTERM, in-flight requests get this long to finish.")
    watch_config: bool = Field(
        True,
        description=(
            "Reload this file live when its content changes (sha256; a `touch` is not a reload): plugin config changes go "
            "through proxy_on_configure, a changed module is hot-swapped (compiled on a thread: the gateway keeps serving; "
            "/health config.reloading meanwhile), a file that fails validation changes nothing; "
            "a changed `model_list`, `router` or `mock` rebuilds the LLM path and swaps it in (requests in flight finish on the old one); "
            "added/removed plugins, `router.breaker` and other sections need a restart (/health config.needs_restart). Admin API changes overlay the file: an edit of a "
            "field an operator changed through /admin (a plugin's config or module) is not applied but reported (log "
            "warning and /health config.overridden); DELETE /admin/plugins/NAME/config|module returns that field to the file's value."
        ),
    )
    # Client-side limits (431/413/408 answers; docs/limits-and-failures.md).
    max_request_headers_kb: int = Field(60, ge=1, le=8192, description="Request head (all header names + values) above this: 431. Also caps the bytes a plugin can make any header map hold.")
    max_request_headers_count: int = Field(100, ge=1, le=10_000, description="More request headers than this: 431. Also caps the entries of plugin-built header maps.")
    max_request_body_bytes: int = Field(32 * 1024 * 1024, ge=1, description="Request body above this (32 MiB): 413 with an OpenAI-shaped error. Does not apply to /admin (see `admin`).")
    header_read_timeout_s: float = Field(10.0, gt=0, description="A request head not complete this long after its first byte: 408, connection closed.")
    keep_alive_timeout_s: float = Field(15.0, gt=0, description="A connection idle this long (before its first request or between keep-alive requests) is closed.")


def _http_url(value: str) -> str:
    """An upstream base URL: http(s) with a host; a trailing / is dropped."""
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


HttpBaseUrl = Annotated[str, AfterValidator(_http_url)]


class UpstreamConfig(_Strict):
    url: HttpBaseUrl = Field(description="The upstream's base URL, http:// or https:// (a trailing / is dropped).")
    timeout_s: float = Field(
        60.0,
        gt=0,
        description=(
            "Wall-clock bounds, not per socket read: the response head within this of the request being sent (else 504), "
            "then each body chunk within this of the previous one (else the response is cut). No total bound: a proxied stream may run as long as it flows."
        ),
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Connect timeout.")
    max_connections: int = Field(100, ge=1, description="Most connections to any one host:port in the gateway's outbound pool (the upstream's; also LLM deployments, callouts, webhooks).")


class RuntimeConfig(_Strict):
    cache_dir: str | None = Field(None, description="Compiled-module cache directory (null: `$XDG_CACHE_HOME/routeiq/modules`, i.e. ~/.cache/routeiq/modules).")
    cache: bool = Field(True, description="Cache compiled modules on disk.")
    epoch_tick_ms: int = Field(5, ge=1, le=1000, description="Granularity of the wall-clock deadline (`limits.timeout_ms`).")
    max_wasm_stack_kb: int = Field(512, ge=64, le=65536, description="Guest stack; deeper recursion traps.")
    oci_cache_dir: str | None = Field(
        None,
        description=(
            "Where modules pulled from `oci://` references are kept, by manifest digest (null: `$XDG_CACHE_HOME/routeiq/oci`). "
            "A cached digest is never fetched again, so a registry down at startup does not stop a gateway that has pulled before."
        ),
    )


class LimitsConfig(_Strict):
    fuel: int = Field(SandboxLimits.fuel, ge=1000, description="Fuel per callback (about one unit per Wasm instruction); out of fuel: trap `fuel_exhausted`. The default runs a Go SDK filter over a 16 MiB body with 4x headroom. The policy may cap it.")
    memory_mb: int = Field(
        SandboxLimits.memory_bytes // (1024 * 1024),
        ge=1,
        le=4096,
        description="Linear memory cap; growth past it is refused (the guest's allocator aborts: trap `memory_limit`). A Go SDK filter reading a whole body holds about 2.2 x the body + 3 MiB. The policy may cap it.",
    )
    timeout_ms: int = Field(SandboxLimits.timeout_ms, ge=1, le=600_000, description="Wall clock per callback; over it: trap `deadline_exceeded` (granularity `runtime.epoch_tick_ms`). The policy may cap it.")
    pause_timeout_ms: int = Field(30_000, ge=1, description="Longest a plugin may keep a stream paused without proxy_continue_stream; then plugin failure `pause_timeout`.")
    max_buffer_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Body bytes this plugin may hold per direction (Envoy's per-filter buffer limit): what it buffers by returning Pause or writes with proxy_set_buffer_bytes. Over it: a request is answered 413, a started response is aborted, a write answers BAD_ARGUMENT.")


class QuarantineConfig(_Strict):
    max_traps: int = Field(5, ge=1, description="Traps within `window_s` that quarantine the plugin.")
    window_s: float = Field(60.0, gt=0, description="Sliding window the traps are counted in.")
    cooldown_s: float = Field(30.0, ge=0, description="Then one probe VM; a clean exchange restores the plugin.")


class _ModuleConfig(_Strict):
    """What a filter plugin and a service plugin both are: a proxy-wasm module and its VM."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Unique name among `plugins` and `services` (its policy entry; its KV/queue namespace unless `vm_id` is set).")
    wasm: str | None = Field(
        None,
        description=(
            "Path to the Wasm module (a sandboxed plugin), or an OCI reference pinned by manifest digest, "
            "`oci://REGISTRY/REPOSITORY[:TAG]@sha256:DIGEST` (pulled, verified and cached at load: docs/distribution.md). "
            "Exactly one of `wasm` and `python` is given."
        ),
    )
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="Optional pin of the module's sha256; a mismatch refuses to load.")
    root_id: str = Field("", description="proxy-wasm root id, as in Envoy.")
    vm_id: str = Field(
        "",
        description=(
            "Envoy's vm_id: modules with the same vm_id share shared data and shared queues (their namespace is the vm_id; "
            "empty: the module's own name). A queue is resolved as (vm_id, name). Also the plugin_vm_id property."
        ),
    )
    config: Union[str, dict[str, Any], list[Any], None] = Field(None, description="Plugin configuration: a string is passed as is, a mapping or list as compact JSON bytes (null: empty). Checked against the manifest's config_schema.")
    vm_config: Union[str, dict[str, Any], list[Any], None] = Field(None, description="VM configuration, same encoding as `config`.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Sandbox limits (the policy may cap them lower).")
    env: dict[str, str] = Field(default_factory=dict, description="WASI environment variables the plugin sees (nothing of the gateway's environment).")
    log_level: LOG_LEVELS | None = Field(None, description="This plugin's log level (null: `server.log_level`).")
    quarantine: QuarantineConfig = Field(default_factory=QuarantineConfig, description="Automatic quarantine of a misbehaving plugin.")
    on_startup_failure: Literal["abort", "continue", "quarantine"] = Field("abort", description="A plugin that fails to start: `abort` refuses to start the gateway, `continue` runs without it, `quarantine` keeps it quarantined and probes it after the cooldown.")
    startup_timeout_ms: int = Field(10_000, ge=1, description="A plugin slower than this to start counts as failed.")

    @field_validator("wasm")
    @classmethod
    def _oci_pinned(cls, value: str | None) -> str | None:
        # Checked here, before any network: a tag alone names nothing fixed.
        if value is not None and is_oci(value):
            try:
                ref = parse_ref(value)
            except OciError as exc:
                raise ValueError(str(exc)) from None
            if ref.digest is None:
                raise ValueError(f"{value}: an oci:// module must be pinned by its manifest digest (...@sha256:<64 hex>; `routeiq plugin push` prints the reference)")
        return value


class PluginConfig(_ModuleConfig):
    python: str | None = Field(
        None,
        description=(
            "A native Python plugin instead (trusted tier, docs/native-plugins.md): `package.module:Class` or `file.py:Class`. "
            "The policy must allow it by name and exact target (`native: true`, `module:`); only `config` and `fail_open` apply to it."
        ),
    )
    fail_open: bool = Field(False, description="On a plugin failure: skip the plugin (true) or answer 503 (false).")
    depends_on: list[str] | None = Field(None, description="Plugins that must run before this one (null: the manifest's `depends_on`).")
    priority: int | None = Field(None, description="Among plugins free to run, higher first (null: the manifest's `priority`, default 0).")

    @model_validator(mode="after")
    def _one_kind(self) -> "PluginConfig":
        if (self.wasm is None) == (self.python is None):
            raise ValueError("give exactly one of `wasm` (a module path) or `python` (a native plugin)")
        return self


class ServiceConfig(_ModuleConfig):
    """Envoy's bootstrap WasmService: a root context only, never on the request path."""

    wasm: str = Field(description="Path to the Wasm module, or an `oci://...@sha256:DIGEST` reference (as for plugins).")


class HeaderMatchConfig(_Strict):
    """Envoy's route `headers` matcher: one of the value tests (none: the header is present)."""

    name: str = Field(min_length=1, description="Header name (case-insensitive); pseudo-headers such as `:authority` and `:method` too.")
    exact: str | None = Field(None, description="The value equals this.")
    prefix: str | None = Field(None, description="The value starts with this.")
    suffix: str | None = Field(None, description="The value ends with this.")
    contains: str | None = Field(None, description="The value contains this.")
    regex: str | None = Field(None, description="The whole value matches this Python `re` pattern (Envoy's `safe_regex`, a full match).")
    present: bool | None = Field(None, description="true: the header is there; false: it is not.")
    invert: bool = Field(False, description="Match when the test above fails (Envoy's `invert_match`).")

    @model_validator(mode="after")
    def _one_test(self) -> "HeaderMatchConfig":
        given = [k for k in ("exact", "prefix", "suffix", "contains", "regex", "present") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of exact, prefix, suffix, contains, regex, present (got {', '.join(given)})")
        if self.regex is not None:
            _compile(self.regex)
        return self


class RouteMatchConfig(_Strict):
    """What a request must carry to take a route; every given test must hold."""

    prefix: str | None = Field(None, description="The path (before `?`) starts with this. With `path` and `regex` unset, `/` (every path).")
    path: str | None = Field(None, description="The path (before `?`) is exactly this.")
    regex: str | None = Field(None, description="The whole path (before `?`) matches this Python `re` pattern (Envoy's `safe_regex`).")
    case_sensitive: bool = Field(True, description="Whether `prefix` and `path` compare case-sensitively (Envoy's default: true).")
    methods: list[str] = Field(default_factory=list, description="HTTP methods (empty: any).")
    domains: list[str] = Field(
        default_factory=list,
        description=(
            "`:authority` (Host) values, as Envoy's virtual host `domains`: exact (`api.example.com`), suffix (`*.example.com`), "
            "prefix (`api-*`) or `*`; case-insensitive; a value without a port also matches the authority with its port. Empty: any."
        ),
    )
    headers: list[HeaderMatchConfig] = Field(default_factory=list, description="Header tests, all of which must hold.")
    models: list[str] = Field(
        default_factory=list,
        description="LLM requests only: the requested `model` is one of these (empty: any). A route with models never matches a request that is not an LLM request.",
    )

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @model_validator(mode="after")
    def _one_path_test(self) -> "RouteMatchConfig":
        given = [k for k in ("prefix", "path", "regex") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of prefix, path, regex (got {', '.join(given)})")
        for key in ("prefix", "path"):
            value = getattr(self, key)
            if value is not None and not value.startswith("/"):
                raise ValueError(f"{key} must start with '/'")
        if self.regex is not None:
            _compile(self.regex)
        return self


class RoutePluginConfig(_Strict):
    """One plugin on one route (Envoy's per-route filter config, Kong's route-scoped plugin)."""

    disabled: bool = Field(False, description="The plugin does not run on this route (Envoy's `FilterConfig.disabled`).")
    config: Union[str, dict[str, Any], list[Any], None] = Field(
        None,
        description=(
            "This route's configuration of the plugin, replacing its `plugins[].config` (same encoding; checked against the manifest's "
            "config_schema). Given: the route runs its own instance of the plugin (same module, own VM and root context, configured with this)."
        ),
    )


class RouteUrlUpstream(_Strict):
    url: HttpBaseUrl = Field(description="Base URL, http:// or https://, the route's requests are proxied to (its path is prefixed to the request's).")
    timeout_s: float = Field(60.0, gt=0, description="As `upstream.timeout_s`.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Connect timeout.")


class RouteClusterUpstream(_Strict):
    cluster: str = Field(description="The name of a cluster of `clusters:`: each request goes to the endpoint its load balancer picks, with the request's :authority as Host (as Envoy's router).")


def _route_upstream_kind(value: Any) -> str | None:
    """Which form of a route's `upstream` `value` is meant to be, so that only that form's
    errors are reported (a plain union reports every member's). The tags are the names
    `_field_path` leaves out of an error's location."""
    if isinstance(value, str):
        return "literal['default','llm','embedded']"
    if isinstance(value, RouteUrlUpstream) or (isinstance(value, dict) and "url" in value):
        return "RouteUrlUpstream"
    if isinstance(value, RouteClusterUpstream) or (isinstance(value, dict) and "cluster" in value):
        return "RouteClusterUpstream"
    return None


RouteUpstream = Annotated[
    Union[
        Annotated[Literal["default", "llm", "embedded"], Tag("literal['default','llm','embedded']")],
        Annotated[RouteUrlUpstream, Tag("RouteUrlUpstream")],
        Annotated[RouteClusterUpstream, Tag("RouteClusterUpstream")],
    ],
    Discriminator(
        _route_upstream_kind,
        custom_error_type="route_upstream",
        custom_error_message="expected `default`, `llm`, `embedded`, `{url: ...}` or `{cluster: NAME}`",
    ),
]


class RouteConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="Unique route name (the `route_name` property, metrics, logs).")
    match: RouteMatchConfig = Field(default_factory=RouteMatchConfig, description="Which requests take this route (the first route that matches wins).")
    upstream: RouteUpstream = Field(
        "default",
        description=(
            "Where the route's requests go: `default` (what they would reach without routes: the LLM router for its API paths when "
            "`model_list` is set, else `upstream`), `llm` (the LLM router's API only; other paths 404), `embedded` (the built-in mock "
            "upstream), `{url: ...}` (a reverse proxy) or `{cluster: NAME}` (an operator cluster: the `cluster_name` property)."
        ),
    )
    plugins: dict[str, RoutePluginConfig] = Field(default_factory=dict, description="Per-plugin settings on this route, by plugin name (unnamed plugins run with their own config).")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Route metadata, as Envoy's route `metadata` (`filter_metadata: {<filter name>: {...}}`): plugins read it as the "
            "`route_metadata` / `xds.route_metadata` properties, e.g. `route_metadata.filter_metadata.envoy.filters.http.wasm.auth`."
        ),
    )
    auth: bool | None = Field(None, description="With `keys.enabled`: true, requests on this route need a virtual key; false, they do not; null: `keys.require_on` decides by path.")

    @field_validator("metadata")
    @classmethod
    def _envoy_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, entry in value.items():
            if key != "filter_metadata":
                raise ValueError(f"unknown key {key!r}: route metadata holds `filter_metadata` (Envoy's Metadata message)")
            if not isinstance(entry, dict) or not all(isinstance(v, dict) for v in entry.values()):
                raise ValueError("filter_metadata maps filter names to mappings")
        return value


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"regex {pattern!r} does not compile: {exc}") from None


class KvConfig(_Strict):
    backend: Literal["memory", "redis"] = Field("memory", description="`memory`: one process; `redis`: workers and replicas share it.")
    url: str | None = Field(None, description="`redis://host:port/db` (or rediss://); required for the redis backend.")
    prefix: str = Field("routeiq", description="Redis key prefix.")
    timeout_s: float = Field(
        1.0,
        gt=0,
        description=(
            "Whole budget of one Redis call (connect, send, reply), run on the store's own thread; over it, or Redis down, "
            "the plugin's host call answers INTERNAL_FAILURE (never a trap) and the `redis` breaker counts it. The wait is not charged to the plugin's timeout_ms."
        ),
    )

    @model_validator(mode="after")
    def _url(self) -> "KvConfig":
        if self.backend == "redis" and not (self.url and re.match(r"^rediss?://", self.url)):
            raise ValueError("the redis backend needs url: redis://host:port[/db]")
        return self


class AuditConfig(_Strict):
    path: str | None = Field(
        None,
        description=(
            "Also write denied host calls and MCP tool calls (event `tool_call`: tool, caller, outcome; never arguments) here as JSON lines (null: log only). Every denial is counted (/metrics, admin); "
            "the log warning is rate-limited to one per plugin/call/reason every 10 s."
        ),
    )


class LitellmParams(BaseModel):
    """Any other key is a litellm parameter and passes through to litellm."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, description="`provider/model`; `openai/...` with an `api_base` is called directly.")
    api_base: str | None = Field(None, description="Provider base URL, or `embedded` for the built-in mock provider.")
    api_key: str | None = Field(
        None,
        description="API key; `os.environ/NAME` (litellm syntax, also in any other value) is read at startup, and an unset NAME refuses the config (serve and check-config exit 2 naming the field).",
    )


class ModelInfo(BaseModel):
    """Other keys are accepted and ignored by RouteIQ (litellm's own model_info keys)."""

    model_config = ConfigDict(extra="allow")
    id: str | None = Field(None, description="Deployment id, unique (null: `<model_name>#<index>`).")
    cost_per_1k_tokens: float = Field(0.0, ge=0, description="Used by cost-aware strategies.")
    quality: float = Field(0.5, ge=0, le=1, description="Prior quality for cost_capped_quality.")
    weight: float = Field(1.0, gt=0, description="weighted_round_robin weight.")
    passthrough: bool | None = Field(None, description="null: direct for OpenAI-compatible deployments with an api_base, litellm otherwise; false forces litellm, true forces direct.")


class ModelEntry(_Strict):
    model_name: str = Field(min_length=1, description="The model group clients ask for.")
    rpm: int | None = Field(
        None,
        ge=1,
        description=(
            "Requests per minute this deployment takes (LiteLLM's `rpm`, also read from `litellm_params.rpm`); over it in the current "
            "minute, it is ranked last, as if its breaker were open (tried only if nothing else is left). Counted per worker process."
        ),
    )
    litellm_params: LitellmParams = Field(description="Passed to litellm for providers that need translation.")
    model_info: ModelInfo = Field(default_factory=ModelInfo, description="RouteIQ's routing data for this deployment.")


class BreakerConfig(_Strict):
    failure_rate_threshold: float = Field(0.5, gt=0, le=1, description="Opens when this share of the calls in `window_s` failed...")
    minimum_requests: int = Field(20, ge=1, description="...and the window holds at least this many calls.")
    consecutive_failures: int = Field(5, ge=0, description="Or this many failures in a row, whatever the volume (0: off). `failure_threshold`, the old name, is accepted for it.")
    window_s: float = Field(30.0, gt=0, description="Sliding window of the failure rate, in seconds.")
    cooldown_s: float = Field(10.0, ge=0, description="Open -> half-open after this.")
    half_open_probes: int = Field(1, ge=1, description="Calls let through while half-open.")

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: Any) -> Any:
        # `failure_threshold` (failures within window_s) was the rule before failure
        # rates; a config that still says it means "this many in a row".
        if isinstance(data, dict) and "failure_threshold" in data:
            if "consecutive_failures" in data:
                raise ValueError("give consecutive_failures or its old name failure_threshold, not both")
            data = {**data}
            data["consecutive_failures"] = data.pop("failure_threshold")
        return data


class ModelGroupAlias(_Strict):
    model: str = Field(min_length=1, description="The model group the alias stands for.")
    hidden: bool = Field(False, description="Not listed by /v1/models (still routed).")


# A string or a mapping: told apart first, so a bad mapping reports its own error only.
GroupAlias = Annotated[
    Union[Annotated[str, Tag("str")], Annotated[ModelGroupAlias, Tag("ModelGroupAlias")]],
    Discriminator(lambda v: "str" if isinstance(v, str) else "ModelGroupAlias"),
]


class RoutingReplicationConfig(_Strict):
    enabled: bool = Field(
        True,
        description=(
            "With `kv.backend: redis`, every node (worker process, replica) ships its routing outcomes and feedback to the others through a Redis Stream "
            "and applies theirs, so learned strategies learn from all traffic and /v1/feedback works on any node. No effect with the memory backend."
        ),
    )
    stream_max_len: int = Field(100_000, ge=100, description="Events kept in the stream (approximate MAXLEN); a node that starts later replays them to catch up.")
    flush_interval_s: float = Field(0.05, gt=0, le=5, description="Events are buffered and written in one batch this often, off the request path.")
    max_buffered: int = Field(10_000, ge=1, description="Events waiting for Redis; past this (Redis down) the oldest are dropped and counted (`dropped`).")
    feedback_wait_s: float = Field(1.0, ge=0, le=30, description="/v1/feedback for a request this node has not seen yet waits this long for its outcome to arrive from the node that served it before answering 404.")


class RouterConfig(_Strict):
    strategy: str = Field("weighted_round_robin", description="A strategy name from `routeiq route-eval` / strategies/.")
    strategy_options: dict[str, Any] = Field(default_factory=dict, description="Keyword options of that strategy; they also apply on top of a trained `router.artifact`. Learned strategies take an operator knob: `min_quality: q` (the cheapest deployment predicted to reach quality q, 0..1) or `max_cost_per_request: X` (the best predicted quality among deployments predicted to cost at most X, in the training data's cost units), and `explore` (0..0.5, share of requests sent to a uniformly chosen deployment); `quality_predictor` also `operating_point` (`max_quality` or `match_best`), `online_rate` and `max_shift` (docs/routing.md).")
    artifact: str | None = Field(None, description="Trained strategy state saved by `routeiq route-train` (JSON with sha256, verified on load).")
    custom_routers: str | None = Field(None, description="Directory of custom strategy modules (interface checked at load).")
    auto_model: str = Field("auto", description="A request for this model name may be routed to any deployment.")
    retries: int = Field(2, ge=0, le=10, description="Other deployments tried after a failure.")
    timeout_s: float = Field(60.0, gt=0, description="A whole non-streaming attempt, connect to last body byte; over it: 504 (or the next deployment).")
    first_byte_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Streaming: until the first chunk (null: `timeout_s`). The first chunk is awaited before the response starts, so a silent deployment still fails over.",
    )
    stream_idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Streaming: longest gap between two chunks; over it the stream ends with a `data: {\"error\": ...}` event and no [DONE]. Raise it for models that pause mid-answer.",
    )
    breaker: BreakerConfig = Field(default_factory=BreakerConfig, description="Circuit breakers: per deployment, per callout target (ext_auth...), Redis and webhook target.")
    replication: RoutingReplicationConfig = Field(default_factory=RoutingReplicationConfig, description="Sharing what learned strategies learn between workers and replicas (needs `kv.backend: redis`).")
    fallbacks: list[dict[str, list[str]]] = Field(
        default_factory=list,
        description=(
            "Model groups tried in order once a group's own deployments (and `retries`) are exhausted, in LiteLLM's format: "
            "`[{\"gpt-4\": [\"gpt-3.5-turbo\"]}]`; the key `*` applies to every group. For a failure the client caused "
            "(a 4xx other than 429) only the two lists below apply. The answer keeps `x-routeiq-model` (the group asked for) "
            "and says `x-routeiq-fallback-group` (the group that answered); `x-routeiq-attempts` counts across groups."
        ),
    )
    context_window_fallbacks: list[dict[str, list[str]]] = Field(
        default_factory=list,
        description="As `fallbacks`, for a context-length failure only (upstream 400 `context_length_exceeded`, litellm's ContextWindowExceededError); without an entry for the group, `fallbacks` applies.",
    )
    content_policy_fallbacks: list[dict[str, list[str]]] = Field(
        default_factory=list,
        description="As `fallbacks`, for a content policy refusal only (`content_policy_violation`, litellm's ContentPolicyViolationError); without an entry for the group, `fallbacks` applies.",
    )

    max_fallbacks: int = Field(
        5,
        ge=0,
        description="Most fallback groups tried for one request, across all three lists (LiteLLM's `max_fallbacks`, same default; 0: fallbacks off).",
    )
    model_group_alias: dict[str, GroupAlias] = Field(
        default_factory=dict,
        description=(
            "Other names for model groups, in LiteLLM's format: `{\"gpt-4-turbo\": \"gpt-4\"}` or `{\"gpt-4-turbo\": {\"model\": \"gpt-4\", "
            "\"hidden\": true}}`. A request for the alias is routed (and falls back) as one for the group; `x-routeiq-model` names the group. "
            "`/v1/models` lists aliases that are not hidden. An alias may not be a group's own name."
        ),
    )

    @field_validator("fallbacks", "context_window_fallbacks", "content_policy_fallbacks", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        # LiteLLM also accepts `{"gpt-4": "gpt-3.5-turbo"}`.
        if isinstance(value, list):
            return [{k: [v] if isinstance(v, str) else v for k, v in e.items()} if isinstance(e, dict) else e for e in value]
        return value


class MockModelConfig(_Strict):
    latency_ms: float = Field(0.0, ge=0, description="Delay before each answer.")
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of calls that fail (a provider error, so the router fails over).")
    timeout_rate: float = Field(0.0, ge=0, le=1, description="Share of calls that hang past the attempt's timeout.")
    chunk_delay_ms: float = Field(0.0, ge=0, description="Delay between streamed chunks.")


class MockConfig(_Strict):
    models: dict[str, MockModelConfig] = Field(default_factory=dict, description="Behaviour of the embedded mock provider per provider model name (the part after `openai/`), or `*` for all.")


class TracingConfig(_Strict):
    exporter: Literal["none", "otlp"] = Field("none", description="OpenTelemetry: a span per request, plugin callback, routing decision and LLM call, exported over OTLP/HTTP (`otlp`) or not at all.")
    endpoint: str = Field("http://127.0.0.1:4318/v1/traces", description="OTLP/HTTP traces endpoint.")
    service_name: str = Field("routeiq", description="service.name of the spans.")


class WebhookTargetConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Unique target name; also names its breaker `webhook:<name>`.")
    url: str = Field(pattern=r"^https?://", description="Where events are POSTed.")
    secret: str = Field(min_length=16, description="HMAC-SHA256 key shared with the receiver (docs/webhooks.md).")
    events: list[Literal["*", "request_complete", "error", "model_switch", "plugin_quarantined", "breaker_state_change"]] = Field(default_factory=lambda: ["*"], description="Event types sent to this target (`*`: all).")
    timeout_s: float = Field(5.0, gt=0, description="Time budget of one delivery attempt.")
    max_attempts: int = Field(10, ge=1, description="Attempts before the event moves to the outbox's `dead` table.")
    backoff_initial_s: float = Field(0.5, gt=0, description="Delay before the first retry; doubles per attempt (capped by backoff_max_s, with jitter).")
    backoff_max_s: float = Field(60.0, gt=0, description="Longest delay between two attempts.")


class WebhooksConfig(_Strict):
    outbox: str = Field(".routeiq-state/webhooks.sqlite", description="Durable outbox, relative to the config file; one file per worker (.1, .2, ...).")
    targets: list[WebhookTargetConfig] = Field(default_factory=list, description="Receivers (docs/webhooks.md).")


class AdminKeyConfig(_Strict):
    name: str = Field(description="Key name (audit log, metrics).")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="sha256 of the key; `routeiq admin new-key --name ops --role operator` prints key and hash.")
    role: Literal["viewer", "operator", "admin"] = Field(description="viewer < operator < admin.")


class ConsoleConfig(_Strict):
    """The operator console at /ui (docs/console.md): pages over the admin API, same keys and roles."""

    enabled: bool = Field(True, description="Serve the console at /ui (login with an `admin.keys` key). False: /ui is not routed.")
    session_ttl_s: int = Field(8 * 3600, ge=60, le=7 * 86400, description="A console session (cookie) ends this long after login (8 h); log in again then.")
    session_secret: str | None = Field(
        None,
        description=(
            "Signs console session cookies. Unset: a random secret kept in `admin.state_dir` (console-session.key), shared by the workers of one node; "
            "replicas behind one load balancer need the same value (`os.environ/NAME`)."
        ),
    )
    behind_tls: bool = Field(False, description="The gateway is reached through a TLS-terminating proxy: mark session cookies Secure even on plain-HTTP requests (they are whenever the request itself is https).")
    poll_s: float = Field(5.0, gt=0, le=60, description="How often the console samples request rate, errors, latency, traps and denials for its charts (the last 15 minutes are kept, per worker).")


class AdminConfig(_Strict):
    keys: list[AdminKeyConfig] = Field(default_factory=list, description="API keys of the /admin API (none: every admin call answers 401).")
    state_dir: str = Field(".routeiq-state", description="Operator changes (config, swapped modules, kept manifests, manual quarantines) that survive restarts; relative to the config file.")
    # Admin request bodies are refused (413) past these, before they are buffered.
    max_config_bytes: int = Field(1024 * 1024, ge=1, description="PUT/PATCH config body (and the merged result) above this (1 MiB): 413 body_too_large, refused before it is buffered.")
    max_module_bytes: int = Field(64 * 1024 * 1024, ge=1, description="POST module body above this (64 MiB): 413 body_too_large. server.max_request_body_bytes does not apply to /admin.")
    console: ConsoleConfig = Field(default_factory=ConsoleConfig, description="The operator console at /ui.")


class StatsTagConfig(_Strict):
    tag_name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="The tag's name: the Prometheus label of plugin metrics it matches (Envoy's `stats_tags[].tag_name`).")
    regex: str | None = Field(
        None,
        description=(
            "Searched in each plugin metric's name as defined (Envoy's `stats_tags[].regex`, a Python `re` pattern here): the first capture group "
            "is cut out of the name, the second (or the first, if there is only one) is the tag's value. Exactly one of `regex` and `fixed_value`."
        ),
    )
    fixed_value: str | None = Field(None, description="A tag with this value on every plugin metric (Envoy's `stats_tags[].fixed_value`).")

    @model_validator(mode="after")
    def _one_source(self) -> "StatsTagConfig":
        if (self.regex is None) == (self.fixed_value is None):
            raise ValueError("give exactly one of `regex` and `fixed_value`")
        if self.regex is not None:
            try:
                pattern = re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
            if pattern.groups not in (1, 2):
                raise ValueError(f"regex {self.regex!r} must have one or two capture groups (the part of the name to cut out, then optionally the value)")
        return self


class StatsConfig(_Strict):
    stats_tags: list[StatsTagConfig] = Field(
        default_factory=list,
        description=(
            "Tag rules for plugin metric names, as Envoy's bootstrap `stats_config.stats_tags`: a name carrying tags "
            "(`custom_header_value_counts_value=foo_reporter=wasmgosdk`) becomes a labelled Prometheus metric. None: every name is kept whole."
        ),
    )


class ClusterTlsConfig(_Strict):
    sni: str | None = Field(None, description="TLS SNI and the name the certificate must carry (null: the endpoint's host).")
    verify: bool = Field(True, description="Verify the endpoint's certificate (false: any certificate is accepted; for a test bed only).")
    ca_file: str | None = Field(None, description="PEM file of the CA certificates to trust instead of the system's, relative to the config file (null: the system's trust store).")


class ClusterConfig(_Strict):
    """An operator-named upstream, as an Envoy cluster: plugins reach it by name through
    proxy_http_call when the policy grants that cluster (docs/envoy-compatibility.md)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$", description="Unique cluster name: the `upstream` of proxy_http_call, and what a policy callout rule's `cluster:` grants. Looked up before any host:port reading of the upstream.")
    endpoints: list[str] = Field(min_length=1, description="`host:port` of each endpoint (an IPv6 address in brackets: `[::1]:8080`); a name is resolved when connecting. The operator names them, so they are trusted: no SSRF check, even on loopback.")
    scheme: Literal["http", "https"] = Field("http", description="How endpoints are spoken to (`tls` implies https). The plugin's `:scheme` does not change it, as in Envoy.")
    tls: ClusterTlsConfig | None = Field(None, description="TLS settings (given: the cluster is https).")
    connect_timeout_s: float = Field(5.0, gt=0, description="Connect timeout to an endpoint (Envoy's `connect_timeout`; the call's own timeout bounds it too).")
    timeout_s: float = Field(60.0, gt=0, description="Bound of a call that gives no timeout (proxy_http_call with timeout 0; still capped by the policy's `callout_timeout_ms`).")
    max_connections: int = Field(100, ge=1, description="Connections the cluster's own pool holds open at most (Envoy's circuit breaker `max_connections`); more requests wait for one.")
    lb_policy: Literal["round_robin", "random"] = Field("round_robin", description="How an endpoint is chosen for each request.")

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for text in value:
            split_endpoint(text)  # ValueError names the endpoint
        return value

    @model_validator(mode="after")
    def _tls_is_https(self) -> "ClusterConfig":
        if self.tls is not None and self.scheme == "http" and "scheme" in self.model_fields_set:
            raise ValueError("`tls` is given, so the cluster is https: drop `scheme: http` (or the tls settings)")
        return self


LLM_API_PREFIXES = [
    "/v1/chat/", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages", "/v1/moderations", "/v1/images/", "/v1/audio/", "/v1/models",
    "/chat/", "/completions", "/embeddings", "/responses", "/messages", "/moderations", "/images/", "/audio/", "/models",
]


class KeysConfig(_Strict):
    """Virtual keys, teams, budgets and spend (docs/keys.md)."""

    enabled: bool = Field(False, description="Authenticate requests on `require_on` paths (and routes with `auth: true`) with virtual keys; LiteLLM's `general_settings.master_key` turns it on.")
    database: str | None = Field(
        None,
        description="`sqlite:///FILE` (relative to the config file) or `postgresql://user:pass@host:port/db` (several workers or replicas); null: sqlite:///<admin.state_dir>/keys.db. Migrated at startup.",
    )
    master_key: str | None = Field(None, description="A key that authenticates as the operator: calls any model without limits and manages keys (/key/*, /team/*, /spend/*). `os.environ/NAME` reads it from the environment.")
    require_on: list[str] = Field(default_factory=lambda: list(LLM_API_PREFIXES), description="Path prefixes that need a key (default: the LLM API, with and without /v1). A route's `auth` overrides it for that route.")
    cache_ttl_s: float = Field(1.0, gt=0, le=300, description="How long a node trusts a key's record before reading it again: the bound on how late a revocation, block or change is seen.")
    store_down: Literal["closed", "cached"] = Field(
        "closed",
        description="The key database cannot be read and a key's cached record is stale: `closed` answers 503 auth_unavailable; `cached` keeps serving keys this node has seen (unknown keys are still refused).",
    )
    database_timeout_s: float = Field(2.0, gt=0, description="Connect and statement timeout of the key database.")
    spend_flush_s: float = Field(0.05, gt=0, le=10, description="Charges are written to the database in batches this often (a batch the database refuses waits in the outbox).")
    rates: Literal["auto", "memory", "redis"] = Field("auto", description="Where rpm/tpm windows are counted: `redis` (exact across workers and replicas; the kv Redis), `memory` (per process); `auto`: redis when kv.backend is redis.")


class ReplicasConfig(_Strict):
    """Several workers and replicas as one gateway (docs/replicas.md)."""

    share_operator_state: bool = Field(
        True,
        description=(
            "With `kv.backend: redis`, admin changes (plugin config, swapped modules, manual quarantine) are recorded in Redis and every worker "
            "and replica applies them; each node keeps its last good state in admin.state_dir. false: each process keeps its own (memory backend: always)."
        ),
    )
    node_name: str | None = Field(None, description="This host's name in node ids (`<node_name>:<pid>`); null: the hostname.")
    poll_s: float = Field(1.0, gt=0, le=60, description="Each node also checks the record this often, for a change published while it was disconnected (changes normally arrive by pub/sub within milliseconds).")
    node_ttl_s: float = Field(5.0, gt=0, le=600, description="A node that has not reported for this long drops out of /admin/nodes (nodes report every poll_s).")

    @model_validator(mode="after")
    def _ttl(self) -> "ReplicasConfig":
        if self.node_ttl_s <= self.poll_s:
            raise ValueError("node_ttl_s must be longer than poll_s (nodes report every poll_s)")
        return self


# `embedded` or a mapping, told apart first so that only the meant form's error is reported.
GatewayUpstream = Annotated[
    Union[Annotated[Literal["embedded"], Tag("literal['embedded']")], Annotated[UpstreamConfig, Tag("UpstreamConfig")]],
    Discriminator(lambda v: "literal['embedded']" if isinstance(v, str) else "UpstreamConfig"),
]


class McpAllowConfig(_Strict):
    """Who may list and call a tool (default deny: nobody). A caller allowed by any entry may."""

    anyone: bool = Field(False, description="Every caller, also one without a key (with `keys.enabled`, /mcp still needs a key).")
    keys: list[str] = Field(default_factory=list, description="Virtual keys, by consumer id, key alias or key name (docs/keys.md).")
    teams: list[str] = Field(default_factory=list, description="Virtual keys of these teams, by team id or alias.")
    admin_role: Literal["viewer", "operator", "admin"] | None = Field(None, description="Admin API keys (`admin.keys`) of at least this role (viewer < operator < admin). The master key may call every tool.")


class McpToolConfig(_Strict):
    """One Wasm module served as an MCP tool (docs/mcp.md). Its description and input/output
    JSON schemas come from the module's manifest; its capabilities from the policy's `tools:`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="The tool's MCP name (unique among tools) and its policy entry (`tools.<name>`); also its shared-data namespace.")
    wasm: str = Field(description="Path to the tool module (a core module exporting `routeiq_tool_call`, or a routeiq:tool component), relative to the config file.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="Expected sha256 of the module (refused when it differs).")
    description: str | None = Field(None, description="Overrides the manifest's description.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Sandbox limits of each piece of guest code a call runs (the call, each callout response; the policy may cap them lower); `fuel`, `memory_mb` and `timeout_ms` apply.")
    call_timeout_ms: int = Field(10_000, ge=1, le=600_000, description="Wall clock of a whole call, waiting for its HTTP callouts included (each callout's timeout is capped by what is left of it plus 250 ms, so the call's own deadline answers first); over it: a tool error `call_timeout` and a fresh VM.")
    config: Union[str, dict[str, Any], list[Any], None] = Field(None, description="Tool configuration bytes (as `plugins[].config`), readable as the plugin configuration buffer. Checked against the manifest's config_schema.")
    log_level: LOG_LEVELS | None = Field(None, description="The tool's log level (null: `server.log_level`).")
    allow: McpAllowConfig = Field(default_factory=McpAllowConfig, description="Who may list and call it (nobody unless given).")


class McpServerConfig(_Strict):
    """An upstream MCP server (Streamable HTTP) whose tools the gateway serves as its own,
    under a prefix, with the same caller checks, `allow:` permissions, argument validation,
    limits and metrics as Wasm tools (docs/mcp.md, "Upstream MCP servers")."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,48}$", description="The server's name: its breaker (`mcp:<name>`), its /health entry and the default prefix.")
    url: str = Field(pattern=r"^https?://", description="The server's Streamable HTTP endpoint, e.g. `http://10.0.0.5:8000/mcp`.")
    prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,48}$", description="Its tools are listed as `<prefix>_<tool>` (null: the server's name). Tool names outside [A-Za-z0-9_.-] or over 128 characters are skipped with a warning.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers sent upstream with every request, e.g. `authorization: os.environ/SEARCH_MCP_AUTHORIZATION` (a whole value `os.environ/NAME` is read from the environment at startup; unset: the config is refused). The caller's own credential is never forwarded.",
    )
    tools: list[str] = Field(default_factory=list, description="Upstream tool names to expose (empty: all it lists).")
    timeout_s: float = Field(30.0, gt=0, description="Longest a forwarded tools/call may take; then the caller gets a tool error and the breaker counts a failure.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Longest the MCP handshake (initialize and tools/list) may take.")
    retry_s: float = Field(5.0, gt=0, description="While the server is unreachable, how often the gateway tries to connect again (and, when connected, how often it lists its tools again).")
    allow: McpAllowConfig = Field(default_factory=McpAllowConfig, description="Who may list and call its tools (nobody unless given), as for `mcp.tools[].allow`.")

    @field_validator("headers")
    @classmethod
    def _headers_from_environment(cls, value: dict[str, str]) -> dict[str, str]:
        resolved = {}
        for name, text in value.items():
            try:
                resolved[name] = litellm_settings.resolve_env(text, name)
            except litellm_settings.SettingError as exc:
                raise ValueError(str(exc)) from None
        return resolved


class McpConfig(_Strict):
    """The MCP gateway at /mcp (Streamable HTTP) and GET /mcp/tools."""

    tools: list[McpToolConfig] = Field(default_factory=list, description="Wasm tools, loaded at startup (a tool that cannot load refuses the start, naming it).")
    servers: list[McpServerConfig] = Field(default_factory=list, description="Upstream MCP servers fronted by the gateway (one down at startup or later never takes /mcp down: /health says `degraded`).")
    max_output_bytes: int = Field(1024 * 1024, ge=1, description="Largest result a tool may hand back (routeiq_tool_set_output answers BAD_ARGUMENT beyond it).")
    session_idle_timeout_s: float = Field(1800.0, gt=0, description="An MCP session idle this long is closed (its client starts a new one).")
    max_sessions: int = Field(1000, ge=1, description="MCP sessions open at once per worker; more: refused by the SDK.")
    allowed_hosts: list[str] = Field(default_factory=list, description="DNS-rebinding protection (the SDK's): the `Host` values /mcp accepts, e.g. `mcp.example.com` or `127.0.0.1:*` (another: 421). Empty, with `allowed_origins` empty too: no check.")
    allowed_origins: list[str] = Field(default_factory=list, description="With DNS-rebinding protection on: the `Origin` values accepted from browsers (another: 403).")
    stateless: bool | None = Field(
        None,
        description="Streamable HTTP without sessions (the SDK's stateless mode): every request stands alone, so any worker can answer it, but a `notifications/cancelled` cannot reach the call it names. null: stateless when `serve` runs several workers (a session lives in one worker process), stateful otherwise.",
    )
    progress_interval_ms: int = Field(1000, ge=10, description="While a tool call runs, a client that sent a `progressToken` gets `notifications/progress` this often (elapsed ms of the tool's `timeout_ms`).")

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, value: list[McpToolConfig]) -> list[McpToolConfig]:
        names = [t.name for t in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate tool names: {', '.join(dupes)}")
        return value

    @field_validator("servers")
    @classmethod
    def _unique_servers(cls, value: list[McpServerConfig]) -> list[McpServerConfig]:
        for what, keys in (("server names", [s.name for s in value]), ("server prefixes", [s.prefix or s.name for s in value])):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
        return value


class GatewayConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig, description="The HTTP server.")
    upstream: GatewayUpstream = Field("embedded", description="Where non-LLM traffic (and /v1/* without a model_list) goes: `embedded`, the built-in mock OpenAI upstream (no keys, no network), or a reverse proxy to a URL.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="The Wasm runtime.")
    policy: Union[str, dict[str, Any], None] = Field(None, description="Operator policy: a file path, or the policy inline (null: none, every capability denied); `serve --policy FILE` overrides. Fields: the policy reference below.")
    kv: KvConfig = Field(default_factory=KvConfig, description="Shared data and queues behind shared_kv / shared_queue.")
    replicas: ReplicasConfig = Field(default_factory=ReplicasConfig, description="What workers and replicas sharing `kv` Redis share beyond plugin data.")
    keys: KeysConfig = Field(default_factory=KeysConfig, description="Virtual keys, teams, budgets and spend (docs/keys.md).")
    audit: AuditConfig = Field(default_factory=AuditConfig, description="Denied host calls.")
    model_list: list[ModelEntry] = Field(default_factory=list, description="LLM deployments, in litellm's model list format (empty: /v1/* goes to `upstream` like any other path).")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Routing across deployments.")
    general_settings: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "LiteLLM's proxy `general_settings`, accepted as LiteLLM config files give it (docs/configuration.md, \"LiteLLM config files\"): "
            "`master_key` turns on `keys` with that master key, `database_url` becomes `keys.database`, every other key is named in a warning. `router_settings` and "
            "`litellm_settings` are accepted too and mapped onto `router`, `server` and `model_list` at load."
        ),
    )
    mock: MockConfig = Field(default_factory=MockConfig, description="The embedded mock provider.")
    tracing: TracingConfig = Field(default_factory=TracingConfig, description="OpenTelemetry tracing.")
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig, description="Signed event deliveries (docs/webhooks.md).")
    admin: AdminConfig = Field(default_factory=AdminConfig, description="The /admin API (the README's operator guide).")
    stats_config: StatsConfig = Field(default_factory=StatsConfig, description="How plugin metrics are named on /metrics (Envoy's bootstrap `stats_config`); read at startup.")
    clusters: list[ClusterConfig] = Field(default_factory=list, description="Named upstreams (Envoy's `clusters`): a plugin's proxy_http_call names one as its upstream (read at startup).")
    plugins: list[PluginConfig] = Field(default_factory=list, description="Plugins, run in this order on requests and in reverse order on responses.")
    mcp: McpConfig = Field(default_factory=McpConfig, description="Wasm modules as MCP tools at /mcp, with keys and policy (docs/mcp.md).")
    plugins_dir: str | None = Field(
        None,
        description=(
            "A directory of plugins (docs/distribution.md): every `NAME.wasm` in it that no `plugins` entry names is a filter plugin called NAME, "
            "after the `plugins` entries (by file name), with its manifest (section or `NAME.manifest.json`) and its config from `NAME.config.json`/`.yaml` if present. "
            "The policy, pins and ordering rules are those of any plugin; with `server.watch_config` a changed file is hot-swapped and a new one loaded."
        ),
    )
    routes: list[RouteConfig] = Field(
        default_factory=list,
        description=(
            "Routes, tried in order (Envoy's route table; docs/routes.md): the first whose `match` holds decides the request's upstream, "
            "which plugins run and with which config, and the route properties plugins read. A plugin that changes request headers "
            "re-matches the route (Envoy clears its route cache on every request header change). None: every request goes to the default "
            "upstream through every plugin; with routes, a request no route matches is answered 404 `route_not_found`."
        ),
    )
    services: list[ServiceConfig] = Field(
        default_factory=list,
        description=(
            "Service plugins (Envoy's bootstrap WasmService): a root context only (VM start, configure, ticks, queues, callouts, "
            "shared data), no HTTP contexts, never on the request path. The policy grants them by name as it does plugins."
        ),
    )

    @field_validator("clusters")
    @classmethod
    def _unique_clusters(cls, value: list[ClusterConfig]) -> list[ClusterConfig]:
        names = [c.name for c in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"cluster name {name!r} is used twice")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> "GatewayConfig":
        seen: set[str] = set()
        modules: list[_ModuleConfig] = [*self.plugins, *self.services]
        for plugin in modules:
            if plugin.name in seen:
                raise ValueError(f"plugin name {plugin.name!r} is used twice (names are unique across plugins and services)")
            seen.add(plugin.name)
        routes: set[str] = set()
        filters = {p.name for p in self.plugins}
        groups = {m.model_name for m in self.model_list}
        for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            for i, entry in enumerate(getattr(self.router, key)):
                for group, targets in entry.items():
                    for name in [group, *targets] if group != "*" else targets:
                        if name not in groups:
                            raise ValueError(f"router.{key}[{i}].{group}: {name!r} is not a model group of model_list")
        for alias, target in self.router.model_group_alias.items():
            group = target if isinstance(target, str) else target.model
            if alias in groups:
                raise ValueError(f"router.model_group_alias.{alias}: {alias!r} is a model group of model_list itself")
            if group not in groups:
                raise ValueError(f"router.model_group_alias.{alias}: {group!r} is not a model group of model_list")
        for i, route in enumerate(self.routes):
            if route.name in routes:
                raise ValueError(f"routes[{i}]: route name {route.name!r} is used twice")
            routes.add(route.name)
            for name in route.plugins:
                if name not in filters:
                    raise ValueError(f"routes[{i}].plugins.{name}: no plugin of that name in `plugins`")
            if isinstance(route.upstream, RouteClusterUpstream) and route.upstream.cluster not in {c.name for c in self.clusters}:
                raise ValueError(f"routes[{i}].upstream.cluster: no cluster {route.upstream.cluster!r} in `clusters`")
            for model in route.match.models:
                if groups and model not in groups:
                    raise ValueError(f"routes[{i}].match.models: {model!r} is not a model group of model_list")
        # A namespace is a vm_id or, without one, a module's name: a vm_id may not take over
        # another module's own namespace (the policy grants that one by name).
        for module in modules:
            if module.vm_id and module.vm_id != module.name and module.vm_id in seen:
                owner = next(m for m in modules if m.name == module.vm_id)
                if owner.vm_id != module.vm_id:
                    raise ValueError(f"{module.name!r}: vm_id {module.vm_id!r} is the name of another plugin, whose own namespace it is")
        return self


class LoadedConfig:
    """A validated config plus where it came from (relative module paths resolve there)."""

    def __init__(self, model: GatewayConfig, path: Path | None, digest: str | None = None, policy_override: Path | None = None) -> None:
        self.model = model
        self.path = path
        self.base_dir = path.parent if path is not None else Path.cwd()
        self.policy_override = policy_override  # `serve --policy FILE` wins over the config key
        self.digest = digest  # sha256 of the file's bytes (None: not from a file)
        self.warnings: list[str] = []  # LiteLLM settings without a RouteIQ meaning (logged at startup)

    def load_policy(self) -> PolicyModel | None:
        """The operator policy (None: no policy, so every plugin gets no capabilities),
        checked against this config's clusters (check_policy_clusters)."""
        try:
            if self.policy_override is not None:
                source = str(self.policy_override)
                policy = load_policy(self.policy_override)
            elif self.model.policy is None:
                return None
            elif isinstance(self.model.policy, str):
                source = str(self._resolve(self.model.policy))
                policy = load_policy(self._resolve(self.model.policy))
            else:
                source = f"{self.path or '<config>'}: policy"
                policy = parse_policy(self.model.policy, source)
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None
        self.check_policy_clusters(policy, source)
        return policy

    def check_policy_clusters(self, policy: PolicyModel, source: str) -> None:
        """A callout rule naming a cluster this config does not define: an error for a
        plugin or service this config runs (its calls would all be refused, a typo found
        only in production), a warning for a policy entry of a plugin it does not run (a
        policy shared by several gateways)."""
        defined = {c.name for c in self.model.clusters}
        running = {m.name for m in [*self.model.plugins, *self.model.services]}
        errors = []
        for plugin, entry in policy.plugins.items():
            for i, rule in enumerate(entry.callouts):
                if rule.cluster is None or rule.cluster in defined:
                    continue
                message = (
                    f"{source}: plugins.{plugin}.callouts[{i}].cluster: {rule.cluster!r} is not a cluster of {self.path or '<config>'} "
                    f"(clusters: {', '.join(sorted(defined)) or 'none'})"
                )
                if plugin in running:
                    errors.append(message)
                else:
                    log.warning("%s; plugin %r is not configured here, so the rule is unused", message, plugin)
        if errors:
            raise ConfigError("\n".join(errors))

    def clusters(self) -> list[Cluster]:
        """The operator's clusters, resolved (TLS contexts built, `ca_file` relative to the
        config file); ConfigError names the field that cannot be used."""
        out = []
        for i, c in enumerate(self.model.clusters):
            tls = c.tls
            try:
                out.append(
                    Cluster.build(
                        c.name,
                        c.endpoints,
                        c.scheme,
                        tls=tls is not None,
                        sni=tls.sni if tls else None,
                        verify=tls.verify if tls else True,
                        ca_file=self._resolve(tls.ca_file) if tls and tls.ca_file else None,
                        connect_timeout_s=c.connect_timeout_s,
                        timeout_s=c.timeout_s,
                        max_connections=c.max_connections,
                        lb_policy=c.lb_policy,
                    )
                )
            except ClusterSettingError as exc:
                raise ConfigError(f"{self.path or '<config>'}: clusters[{i}].{exc.field}: {exc}") from None
        return out

    def resolve(self, value: str) -> Path:
        return self._resolve(value)

    def audit_path(self) -> Path | None:
        return self._resolve(self.model.audit.path) if self.model.audit.path else None

    def engine_settings(self) -> EngineSettings:
        rt = self.model.runtime
        return EngineSettings(epoch_tick_ms=rt.epoch_tick_ms, max_wasm_stack_bytes=rt.max_wasm_stack_kb * 1024)

    def cache_dir(self) -> Path | None:
        rt = self.model.runtime
        if not rt.cache:
            return None
        if rt.cache_dir:
            return self._resolve(rt.cache_dir)
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "routeiq" / "modules"

    def oci_cache_dir(self) -> Path:
        if self.model.runtime.oci_cache_dir:
            return self._resolve(self.model.runtime.oci_cache_dir)
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "routeiq" / "oci"

    def module_path(self, name: str, wasm: str) -> Path:
        """A module file for a plugin's `wasm:`: the path itself, or the cached pull of an
        oci:// reference (pulled and digest-checked on first use)."""
        if not is_oci(wasm):
            return self._resolve(wasm)
        cache = self.oci_cache_dir()
        try:
            return fetch_module(parse_ref(wasm), cache)
        except OciError as exc:
            raise ConfigError(f"{self.path or '<config>'}: plugin {name!r}: cannot load {wasm}: {exc} (no cached copy in {cache})") from None

    def _resolve(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.base_dir / p)

    def stats_tag_rules(self) -> list[TagRule]:
        return [TagRule(t.tag_name, re.compile(t.regex) if t.regex is not None else None, t.fixed_value) for t in self.model.stats_config.stats_tags]

    def native_plugins(self) -> list[PluginConfig]:
        return [p for p in self.model.plugins if p.python is not None]

    def plugins_dir(self) -> Path | None:
        return self._resolve(self.model.plugins_dir) if self.model.plugins_dir else None

    def discovered_plugins(self) -> list[PluginConfig]:
        """plugins_dir's modules that no `plugins`/`services` entry names, by file name."""
        directory = self.plugins_dir()
        if directory is None:
            return []
        where = f"{self.path or '<config>'}: plugins_dir"
        try:
            files = sorted(p for p in directory.iterdir() if p.suffix == ".wasm" and p.is_file())
        except OSError as exc:
            raise ConfigError(f"{where}: cannot list {directory}: {exc.strerror or exc}") from None
        named = {p.name for p in self.model.plugins} | {s.name for s in self.model.services}
        found = []
        for wasm in files:
            if wasm.stem in named:
                continue  # the explicit entry configures it
            try:
                found.append(PluginConfig(name=wasm.stem, wasm=str(wasm), config=_sidecar_config(wasm)))
            except ValidationError as exc:
                raise ConfigError(f"{where}: {wasm.name}: {exc.errors()[0]['msg']} (a plugin name is letters, digits, `_`, `.`, `-`)") from None
        return found

    def plugins_dir_signature(self) -> tuple[tuple[str, int, int], ...] | None:
        """What the watcher compares to see files added, changed or removed."""
        directory = self.plugins_dir()
        if directory is None:
            return None
        try:
            entries = [(p.name, p.stat()) for p in directory.iterdir() if p.suffix in (".wasm", ".json", ".yaml", ".yml")]
        except OSError:
            return ()
        return tuple(sorted((name, st.st_mtime_ns, st.st_size) for name, st in entries))

    def plugin_specs(self) -> list[PluginSpec]:
        """Every Wasm module to run: the filter plugins (config order, then plugins_dir's),
        then the services."""
        explicit = [p for p in self.model.plugins if p.wasm is not None] + self.discovered_plugins()
        wasm: list[tuple[_ModuleConfig, str]] = [(p, "filter") for p in explicit]  # native: native_plugins()
        return [self._spec(p, kind) for p, kind in wasm + [(s, "service") for s in self.model.services]]

    def _spec(self, p: _ModuleConfig, kind: str) -> PluginSpec:
        server_level = LogLevel[self.model.server.log_level.upper()]
        level = LogLevel[p.log_level.upper()] if p.log_level else server_level
        # Request-path settings are a filter's only (a service keeps the defaults).
        fail_open, depends_on, priority = (p.fail_open, p.depends_on, p.priority) if isinstance(p, PluginConfig) else (False, None, None)
        wasm = p.wasm
        assert wasm is not None
        return PluginSpec(
            name=p.name,
            wasm_path=self.module_path(p.name, wasm),
            kind=kind,
            sha256=p.sha256,
            root_id=p.root_id,
            vm_id=p.vm_id,
            plugin_config=config_bytes(p.config),
            vm_config=config_bytes(p.vm_config),
            fail_open=fail_open,
            limits=SandboxLimits(
                fuel=p.limits.fuel,
                memory_bytes=p.limits.memory_mb * 1024 * 1024,
                timeout_ms=p.limits.timeout_ms,
            ),
            environment=tuple(sorted(p.env.items())),
            log_level=level,
            pause_timeout_ms=p.limits.pause_timeout_ms,
            max_buffer_bytes=p.limits.max_buffer_bytes,
            quarantine_max_traps=p.quarantine.max_traps,
            quarantine_window_s=p.quarantine.window_s,
            quarantine_cooldown_s=p.quarantine.cooldown_s,
            depends_on=tuple(depends_on) if depends_on is not None else None,
            priority=priority,
            on_startup_failure=p.on_startup_failure,
            startup_timeout_ms=p.startup_timeout_ms,
        )


def _sidecar_config(wasm: Path) -> Any:
    """A discovered plugin's configuration: NAME.config.json or NAME.config.yaml beside it."""
    for suffix in (".config.json", ".config.yaml", ".config.yml"):
        path = wasm.with_name(wasm.stem + suffix)
        if path.exists():
            try:
                return yaml.safe_load(path.read_text())  # JSON is YAML
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"{path}: cannot read the plugin configuration: {exc}") from None
    return None


def config_bytes(value: Any) -> bytes:
    """A string is passed as is; a mapping or list as compact JSON (as Envoy does)."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in (
            "str", "dict[str,any]", "list[any]", "UpstreamConfig", "literal['embedded']", "function-after[_url(), KvConfig]",
            "RouteUrlUpstream", "RouteClusterUpstream", "literal['default','llm','embedded']", "ModelGroupAlias",
        ):  # fmt: skip
            continue  # union branch names are noise for an operator
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def parse_config(data: Any, source: str = "<config>", path: Path | None = None, digest: str | None = None, policy_override: Path | None = None) -> LoadedConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    # LiteLLM's proxy sections, mapped onto ours (a copy: the caller's mapping is left alone).
    data = copy.deepcopy(data)
    try:
        translation = litellm_settings.translate(data)
    except litellm_settings.SettingError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    data = litellm_settings.apply(data, translation)
    try:
        model = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        seen = set()
        for err in exc.errors():
            where = _field_path(tuple(err["loc"]))
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown setting"
            msg = msg.removeprefix("Value error, ")
            key = (where, msg)
            if key in seen:
                continue
            seen.add(key)
            # A cross-field check names its own field path (routes[0].plugins.x: ...).
            lines.append(f"{source}: {msg}" if where == "(top level)" else f"{source}: {where}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    loaded = LoadedConfig(model, path, digest, policy_override)
    loaded.warnings = [f"{source}: {w}" for w in translation.warnings]
    return loaded


def load_config(path: str | os.PathLike[str], policy_override: str | os.PathLike[str] | None = None) -> LoadedConfig:
    """The config file at `path`; `policy_override` (serve --policy) replaces its policy key."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from None
    return config_from_bytes(raw, p, Path(policy_override).resolve() if policy_override else None)


def config_from_bytes(raw: bytes, p: Path, policy_override: Path | None = None) -> LoadedConfig:
    """The config in `raw`, read from file `p`; its `digest` is the sha256 of `raw` (the
    config watcher reloads only when that changes)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: the config file is not UTF-8 (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}{where}: invalid YAML: {problem}") from None
    return parse_config(data, str(p), p.resolve(), hashlib.sha256(raw).hexdigest(), policy_override)
