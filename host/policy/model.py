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
    scheme: str = Field("https", pattern=r"^https?$")
    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    methods: list[str] = Field(default_factory=lambda: ["GET"])

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]


class KvGrantModel(_Strict):
    read: list[str] = Field(default_factory=list)
    write: list[str] = Field(default_factory=list)


class PolicyLimitsModel(_Strict):
    fuel: int | None = Field(None, ge=1000)
    memory_mb: int | None = Field(None, ge=1, le=4096)
    timeout_ms: int | None = Field(None, ge=1)
    callouts_per_request: int = Field(4, ge=0, le=1000)
    callout_timeout_ms: int = Field(5_000, ge=1, le=600_000)
    callout_max_response_bytes: int = Field(1024 * 1024, ge=1)
    kv_key_bytes: int = Field(256, ge=1)
    kv_value_bytes: int = Field(64 * 1024, ge=1)
    queue_item_bytes: int = Field(64 * 1024, ge=1)
    queue_max_items: int = Field(10_000, ge=1)


class SignatureModel(_Strict):
    key: str  # name in trusted_keys
    value: str  # base64 ed25519 signature of the module's sha256 digest


class PluginPolicyModel(_Strict):
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    signature: SignatureModel | None = None
    unpinned: bool = False  # explicitly grant to whatever module carries this name
    native: bool = False  # a native Python plugin (trusted tier), allowed by name and module
    module: str | None = None  # for native plugins: the exact `python:` target allowed
    capabilities: list[Capability] = Field(default_factory=list)
    callouts: list[CalloutRuleModel] = Field(default_factory=list)
    kv: KvGrantModel = Field(default_factory=KvGrantModel)
    limits: PolicyLimitsModel = Field(default_factory=PolicyLimitsModel)

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
    trusted_keys: dict[str, str] = Field(default_factory=dict)
    plugins: dict[str, PluginPolicyModel] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys(self) -> "PolicyModel":
        for name, text in self.trusted_keys.items():
            try:
                signing.public_key(text)
            except signing.KeyFormatError as exc:
                raise ValueError(f"trusted_keys.{name}: {exc}") from None
        for plugin, entry in self.plugins.items():
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
