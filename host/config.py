"""The gateway's configuration file: schema, defaults, and errors that name file and field.

Every setting and its default is documented in docs/configuration.md; keep both in step.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from routeiq.abi.proxy_wasm import LogLevel
from routeiq.dispatch.plugin import PluginSpec
from routeiq.policy.model import PolicyError, PolicyModel, load_policy, parse_policy
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.limits import SandboxLimits


class ConfigError(Exception):
    """A configuration problem, phrased for the operator: file, field, what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    log_level: Literal["trace", "debug", "info", "warn", "error", "critical"] = "info"
    log_format: Literal["text", "json"] = "text"
    max_concurrency: int = Field(0, ge=0)  # requests in flight per worker before 503 (0: no limit)
    drain_timeout_s: float = Field(30.0, ge=0)  # on SIGTERM: time in-flight requests get to finish
    watch_config: bool = True  # reload the config file live when it changes
    # Client-side limits (431/413/408 answers; docs/limits-and-failures.md). The header
    # limits also cap what a plugin can make a header map hold.
    max_request_headers_kb: int = Field(60, ge=1, le=8192)
    max_request_headers_count: int = Field(100, ge=1, le=10_000)
    max_request_body_bytes: int = Field(32 * 1024 * 1024, ge=1)
    header_read_timeout_s: float = Field(10.0, gt=0)  # a client must finish its request head within this
    keep_alive_timeout_s: float = Field(15.0, gt=0)  # an idle keep-alive connection is closed after this


class UpstreamConfig(_Strict):
    url: str
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    max_connections: int = Field(100, ge=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class RuntimeConfig(_Strict):
    cache_dir: str | None = None  # default: $XDG_CACHE_HOME/routeiq/modules
    cache: bool = True
    epoch_tick_ms: int = Field(5, ge=1, le=1000)
    max_wasm_stack_kb: int = Field(512, ge=64, le=65536)


class LimitsConfig(_Strict):
    fuel: int = Field(20_000_000, ge=1000)
    memory_mb: int = Field(16, ge=1, le=4096)
    timeout_ms: int = Field(100, ge=1, le=600_000)
    pause_timeout_ms: int = Field(30_000, ge=1)
    # Envoy's per-filter buffer limit: the most body bytes this plugin may hold (one
    # direction), buffered by Pause or written by proxy_set_buffer_bytes.
    max_buffer_bytes: int = Field(32 * 1024 * 1024, ge=1024)


class QuarantineConfig(_Strict):
    max_traps: int = Field(5, ge=1)  # traps within window_s that quarantine the plugin
    window_s: float = Field(60.0, gt=0)
    cooldown_s: float = Field(30.0, ge=0)  # then a probe; a clean exchange restores it


class PluginConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    wasm: str | None = None  # a Wasm plugin (sandboxed)...
    python: str | None = None  # ...or a native one: "package.module:Class" or "file.py:Class"
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    root_id: str = ""
    vm_id: str = ""
    config: Union[str, dict[str, Any], list[Any], None] = None
    vm_config: Union[str, dict[str, Any], list[Any], None] = None
    fail_open: bool = False
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    env: dict[str, str] = Field(default_factory=dict)
    log_level: Literal["trace", "debug", "info", "warn", "error", "critical"] | None = None
    quarantine: QuarantineConfig = Field(default_factory=QuarantineConfig)
    depends_on: list[str] | None = None  # default: the manifest's
    priority: int | None = None  # default: the manifest's (0)
    on_startup_failure: Literal["abort", "continue", "quarantine"] = "abort"
    startup_timeout_ms: int = Field(10_000, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> "PluginConfig":
        if (self.wasm is None) == (self.python is None):
            raise ValueError("give exactly one of `wasm` (a module path) or `python` (a native plugin)")
        return self


class KvConfig(_Strict):
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None  # redis://host:port/db, required for the redis backend
    prefix: str = "routeiq"
    timeout_s: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _url(self) -> "KvConfig":
        if self.backend == "redis" and not (self.url and re.match(r"^rediss?://", self.url)):
            raise ValueError("the redis backend needs url: redis://host:port[/db]")
        return self


class AuditConfig(_Strict):
    path: str | None = None  # JSON lines; default: the routeiq.audit logger only


class LitellmParams(BaseModel):
    """litellm's deployment parameters; keys RouteIQ does not use pass through to litellm."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    api_base: str | None = None  # "embedded": the built-in mock provider
    api_key: str | None = None


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    cost_per_1k_tokens: float = Field(0.0, ge=0)
    quality: float = Field(0.5, ge=0, le=1)
    weight: float = Field(1.0, gt=0)
    passthrough: bool | None = None  # None: direct for OpenAI-compatible deployments, litellm otherwise


class ModelEntry(_Strict):
    model_name: str = Field(min_length=1)
    litellm_params: LitellmParams
    model_info: ModelInfo = Field(default_factory=ModelInfo)


class BreakerConfig(_Strict):
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)  # failed share of the window's calls that opens it
    minimum_requests: int = Field(20, ge=1)  # calls in the window before the rate counts
    consecutive_failures: int = Field(5, ge=0)  # failures in a row that open it regardless (0: off)
    window_s: float = Field(30.0, gt=0)
    cooldown_s: float = Field(10.0, ge=0)
    half_open_probes: int = Field(1, ge=1)

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


class RouterConfig(_Strict):
    strategy: str = "weighted_round_robin"
    strategy_options: dict[str, Any] = Field(default_factory=dict)
    artifact: str | None = None  # a trained strategy saved by `routeiq route-train` (sha256-checked)
    custom_routers: str | None = None  # directory of custom strategy modules
    auto_model: str = "auto"  # a request for this model may be routed to any deployment
    retries: int = Field(2, ge=0, le=10)  # other deployments tried after a failure
    timeout_s: float = Field(60.0, gt=0)  # a whole non-streaming attempt: connect, head and body
    first_byte_timeout_s: float | None = Field(None, gt=0)  # streaming: until the first chunk (None: timeout_s)
    stream_idle_timeout_s: float = Field(30.0, gt=0)  # streaming: longest gap between two chunks
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)


class MockModelConfig(_Strict):
    latency_ms: float = Field(0.0, ge=0)
    failure_rate: float = Field(0.0, ge=0, le=1)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    chunk_delay_ms: float = Field(0.0, ge=0)


class MockConfig(_Strict):
    models: dict[str, MockModelConfig] = Field(default_factory=dict)  # provider model name (or "*") -> behaviour


class TracingConfig(_Strict):
    exporter: Literal["none", "otlp"] = "none"
    endpoint: str = "http://127.0.0.1:4318/v1/traces"  # OTLP/HTTP traces endpoint
    service_name: str = "routeiq"


class WebhookTargetConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(pattern=r"^https?://")
    secret: str = Field(min_length=16)  # HMAC-SHA256 key shared with the receiver
    events: list[Literal["*", "request_complete", "error", "model_switch", "plugin_quarantined", "breaker_state_change"]] = Field(default_factory=lambda: ["*"])
    timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(10, ge=1)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)


class WebhooksConfig(_Strict):
    outbox: str = ".routeiq-state/webhooks.sqlite"  # relative to the config file; one file per worker
    targets: list[WebhookTargetConfig] = Field(default_factory=list)


class AdminKeyConfig(_Strict):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")  # `routeiq admin new-key` prints key and hash
    role: Literal["viewer", "operator", "admin"]


class AdminConfig(_Strict):
    keys: list[AdminKeyConfig] = Field(default_factory=list)  # no keys: the admin API answers 401
    state_dir: str = ".routeiq-state"  # operator changes (config, modules), relative to the config file
    # Admin request bodies are refused (413) past these, before they are buffered.
    max_config_bytes: int = Field(1024 * 1024, ge=1)  # PUT/PATCH plugin config
    max_module_bytes: int = Field(64 * 1024 * 1024, ge=1)  # POST module (hot swap)


class GatewayConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    upstream: Union[Literal["embedded"], UpstreamConfig] = "embedded"
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    policy: Union[str, dict[str, Any], None] = None  # a policy file path, or the policy inline
    kv: KvConfig = Field(default_factory=KvConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    model_list: list[ModelEntry] = Field(default_factory=list)  # litellm's model list format
    router: RouterConfig = Field(default_factory=RouterConfig)
    mock: MockConfig = Field(default_factory=MockConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    plugins: list[PluginConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> "GatewayConfig":
        seen: set[str] = set()
        for plugin in self.plugins:
            if plugin.name in seen:
                raise ValueError(f"plugin name {plugin.name!r} is used twice")
            seen.add(plugin.name)
        return self


class LoadedConfig:
    """A validated config plus where it came from (relative module paths resolve there)."""

    def __init__(self, model: GatewayConfig, path: Path | None) -> None:
        self.model = model
        self.path = path
        self.base_dir = path.parent if path is not None else Path.cwd()
        self.policy_override: Path | None = None  # `serve --policy FILE` wins over the config key
        self.digest: str | None = None  # sha256 of the file's bytes (None: not from a file)

    def load_policy(self) -> PolicyModel | None:
        """The operator policy (None: no policy, so every plugin gets no capabilities)."""
        try:
            if self.policy_override is not None:
                return load_policy(self.policy_override)
            value = self.model.policy
            if value is None:
                return None
            if isinstance(value, str):
                return load_policy(self._resolve(value))
            return parse_policy(value, f"{self.path or '<config>'}: policy")
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None

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

    def _resolve(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.base_dir / p)

    def native_plugins(self) -> list[PluginConfig]:
        return [p for p in self.model.plugins if p.python is not None]

    def plugin_specs(self) -> list[PluginSpec]:
        server_level = LogLevel[self.model.server.log_level.upper()]
        specs = []
        for p in self.model.plugins:
            if p.wasm is None:
                continue  # native plugins: native_plugins()
            level = LogLevel[p.log_level.upper()] if p.log_level else server_level
            specs.append(
                PluginSpec(
                    name=p.name,
                    wasm_path=self._resolve(p.wasm),
                    sha256=p.sha256,
                    root_id=p.root_id,
                    vm_id=p.vm_id,
                    plugin_config=_config_bytes(p.config),
                    vm_config=_config_bytes(p.vm_config),
                    fail_open=p.fail_open,
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
                    depends_on=tuple(p.depends_on) if p.depends_on is not None else None,
                    priority=p.priority,
                    on_startup_failure=p.on_startup_failure,
                    startup_timeout_ms=p.startup_timeout_ms,
                )
            )
        return specs


def _config_bytes(value: Any) -> bytes:
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
        elif part in ("str", "dict[str,any]", "list[any]", "UpstreamConfig", "literal['embedded']", "function-after[_url(), KvConfig]"):
            continue  # union branch names are noise for an operator
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def parse_config(data: Any, source: str = "<config>", path: Path | None = None) -> LoadedConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
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
            key = (where, msg)
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"{source}: {where}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    return LoadedConfig(model, path)


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from None
    return config_from_bytes(raw, p)


def config_from_bytes(raw: bytes, p: Path) -> LoadedConfig:
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
    loaded = parse_config(data, str(p), p.resolve())
    loaded.digest = hashlib.sha256(raw).hexdigest()
    return loaded
