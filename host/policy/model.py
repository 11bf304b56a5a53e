"""The policy file: schema, loading, and errors that name file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from routeiq.abi.capabilities import Capability

from . import signing


class PolicyError(Exception):
    """A policy problem, phrased for the operator."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CalloutRuleModel(_Strict):
    """One allowed callout target: `scheme` + `host` + `port`, or an operator's `cluster`."""

    scheme: str = Field("https", pattern=r"^https?$", description="`https` or `http` (not with `cluster`: the cluster says).")
    host: str | None = Field(None, min_length=1, description="Exact host name or IP literal the plugin may call (case-insensitive; an IPv6 literal with or without brackets), `*`, or `*.suffix`. A non-public address is allowed only when named here. Exactly one of `host` and `cluster`.")
    port: int | None = Field(None, ge=1, le=65535, description="Port (null: the scheme's default, 443 for https and 80 for http; not with `cluster`).")
    cluster: str | None = Field(None, min_length=1, description="A cluster of the config's `clusters:` the plugin may call by name (proxy_http_call's upstream), on any of its endpoints: they are trusted, so no SSRF check applies. Must be defined in the config.")
    methods: list[str] = Field(default_factory=lambda: ["GET"], description="HTTP methods allowed (case-insensitive).")

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @model_validator(mode="after")
    def _one_form(self) -> "CalloutRuleModel":
        if (self.host is None) == (self.cluster is None):
            raise ValueError("give exactly one of `host` (with scheme and port) and `cluster`")
        if self.cluster is not None and self.model_fields_set & {"scheme", "port"}:
            raise ValueError(f"a `cluster` rule takes no scheme or port (cluster {self.cluster!r} defines them)")
        return self


class KvGrantModel(_Strict):
    read: list[str] = Field(default_factory=list, description="Other namespaces this plugin may read: a vm_id, or the name of a plugin without one (a key `ns/rest` addresses namespace `ns`; resolving and dequeuing another VM's queue need read). Its own namespace (its vm_id, else its name) is always granted.")
    write: list[str] = Field(default_factory=list, description="Namespaces it may read and write (enqueuing to another VM's queue needs write).")
    per_consumer: bool = Field(
        False,
        description=(
            "Scope the plugin's own shared data per authenticated consumer (virtual keys, docs/keys.md): during a request with a consumer, key K "
            "is stored as `@<consumer id>/K`, so requests of one key never see another's entries, whatever the plugin asks for. Root contexts, "
            "timers and requests without a consumer use the namespace unscoped. Other namespaces (`read`/`write`) are never scoped."
        ),
    )


class PolicyLimitsModel(_Strict):
    fuel: int | None = Field(None, ge=1000, description="Caps the config's `plugins[].limits.fuel` (null: no cap).")
    memory_mb: int | None = Field(None, ge=1, le=4096, description="Caps `plugins[].limits.memory_mb` (null: no cap).")
    timeout_ms: int | None = Field(None, ge=1, description="Caps `plugins[].limits.timeout_ms` (null: no cap).")
    callouts_per_request: int = Field(4, ge=0, le=1000, description="Callouts per stream (per tick for root contexts); more: BAD_ARGUMENT, audited `callout_limit`.")
    callout_timeout_ms: int = Field(5_000, ge=1, le=600_000, description="Longest callout.")
    callout_max_response_bytes: int = Field(1024 * 1024, ge=1, description="Largest callout response (1 MiB); a larger one fails the call.")
    kv_key_bytes: int = Field(256, ge=1, description="Largest KV key.")
    kv_value_bytes: int = Field(64 * 1024, ge=1, description="Largest KV value.")
    queue_item_bytes: int = Field(64 * 1024, ge=1, description="Largest queue item.")
    queue_max_items: int = Field(10_000, ge=1, description="Items a queue holds before enqueue is refused.")


class SignatureModel(_Strict):
    key: str = Field(description="Name of a key in `trusted_keys`.")
    value: str = Field(description="Base64 ed25519 signature of the module's 32-byte sha256 digest (`routeiq policy sign`).")


class PluginPolicyModel(_Strict):
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="Pin: the module must hash to this.")
    signature: SignatureModel | None = Field(None, description="Pin: an ed25519 signature by a trusted key (with `sha256` too, both must hold).")
    unpinned: bool = Field(False, description="Explicitly grant to whatever module carries this name. A Wasm entry needs `sha256`, `signature` or `unpinned: true`.")
    native: bool = Field(False, description="A native Python plugin (`plugins[].python`, trusted tier): allowed by name and exact `module`, no pin, no sandbox.")
    module: str | None = Field(None, description="For `native: true` (required there): the exact `python:` target allowed, e.g. `audit.py:Audit`. Nothing is imported before it matches.")
    capabilities: list[Capability] = Field(default_factory=list, description="Capabilities granted (docs/policy.md); the manifest must ask for them too.")
    callouts: list[CalloutRuleModel] = Field(default_factory=list, description="Allow-list of `http_callout` targets.")
    kv: KvGrantModel = Field(default_factory=KvGrantModel, description="Access to other VMs' (other plugins') KV and queue namespaces.")
    limits: PolicyLimitsModel = Field(default_factory=PolicyLimitsModel, description="Limits of this plugin's host calls, and caps of its sandbox limits.")

    @model_validator(mode="after")
    def _pinned(self) -> "PluginPolicyModel":
        if self.native:
            if not self.module:
                raise ValueError("a native plugin entry needs `module` (the exact python target it allows)")
            return self
        if not (self.sha256 or self.signature or self.unpinned):
            raise ValueError("needs a pin: sha256, signature, or an explicit `unpinned: true`")
        return self


class PolicyModel(_Strict):
    trusted_keys: dict[str, str] = Field(default_factory=dict, description="Ed25519 public keys (base64 or hex) that may sign modules, by name (`routeiq policy keygen`).")
    plugins: dict[str, PluginPolicyModel] = Field(default_factory=dict, description="What each plugin, by config name, may do. A plugin without an entry gets no capabilities.")
    tools: dict[str, PluginPolicyModel] = Field(default_factory=dict, description="What each MCP tool (`mcp.tools[].name`, docs/mcp.md) may do, as `plugins` entries (pin, capabilities, callouts, kv, limits). A tool without an entry gets no capabilities.")

    @model_validator(mode="after")
    def _keys(self) -> "PolicyModel":
        for name, text in self.trusted_keys.items():
            try:
                signing.public_key(text)
            except signing.KeyFormatError as exc:
                raise ValueError(f"trusted_keys.{name}: {exc}") from None
        for plugin, entry in [*self.plugins.items(), *self.tools.items()]:
            if entry.signature is not None and entry.signature.key not in self.trusted_keys:
                raise ValueError(f"plugins.{plugin}.signature.key: {entry.signature.key!r} is not in trusted_keys")
        return self


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_policy(data: Any, source: str) -> PolicyModel:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the top level must be a mapping")
    try:
        return PolicyModel.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{source}: {_where(tuple(err['loc']))}: {msg}".replace("Value error, ", ""))
        raise PolicyError("\n".join(dict.fromkeys(lines))) from None


def load_policy(path: Path) -> PolicyModel:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise PolicyError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    return parse_policy(data, str(path))
