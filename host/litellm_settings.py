"""LiteLLM proxy config files, run as they are: `router_settings`, `litellm_settings` and
`general_settings` are translated into RouteIQ's own sections before validation.

What has a RouteIQ meaning is mapped (a setting RouteIQ's own section also gives wins:
the RouteIQ name is the more specific one); every other key is named in one warning, with
the file and the key, at startup and in check-config. `os.environ/NAME` references in
these sections are resolved here: an unset NAME refuses the config naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

ENV_PREFIX = "os.environ/"

# LiteLLM routing_strategy -> RouteIQ strategy (None: no equivalent; the default runs).
ROUTING_STRATEGIES: dict[str, str | None] = {
    "simple-shuffle": "weighted_round_robin",  # litellm's weighted pick by weight/rpm/tpm
    "latency-based-routing": "least_latency",
    "cost-based-routing": "cheapest",
    "least-busy": None,
    "usage-based-routing": None,
    "usage-based-routing-v2": None,
}

FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")

# LiteLLM-only top-level sections: accepted, not applied.
OTHER_SECTIONS = {
    "environment_variables": "not applied: set these variables in the gateway's environment",
    "finetune_settings": "RouteIQ has no /fine_tuning endpoints",
    "files_settings": "RouteIQ has no /files endpoints",
    "credential_list": "not applied: give credentials in litellm_params (os.environ/NAME)",
    "guardrails": "not applied: RouteIQ's guardrails are plugins",
}


class SettingError(Exception):
    """A LiteLLM setting that cannot be used: `key` is its dotted path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass
class Translation:
    """The RouteIQ sections the LiteLLM ones map to, and a warning per unmapped key."""

    router: dict[str, Any] = field(default_factory=dict)
    breaker: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    litellm_params: dict[str, Any] = field(default_factory=dict)  # defaults for every deployment
    keys: dict[str, Any] = field(default_factory=dict)  # virtual keys (general_settings)
    warnings: list[str] = field(default_factory=list)


def resolve_env(value: Any, where: str) -> Any:
    """litellm's `os.environ/NAME`, resolved now, in strings nested anywhere in `value`."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        resolved = os.environ.get(name)
        if not name or resolved is None:
            raise SettingError(where, f"{value} is not set in the environment")
        return resolved
    if isinstance(value, dict):
        return {k: resolve_env(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _number(kind: Callable[[Any], Any]) -> Callable[[Any, str], Any]:
    def convert(value: Any, where: str) -> Any:
        try:
            return kind(value)  # an os.environ/ value arrives as a string
        except (TypeError, ValueError):
            raise SettingError(where, f"expected a number, got {value!r}") from None

    return convert


def _fallbacks(value: Any, where: str) -> list[dict[str, list[str]]]:
    """LiteLLM's `[{"group": ["fallback", ...]}, ...]` (a single name for the list is accepted)."""
    if not isinstance(value, list):
        raise SettingError(where, 'expected a list like [{"gpt-4": ["gpt-3.5-turbo"]}]')
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise SettingError(f"{where}[{i}]", 'expected a mapping like {"gpt-4": ["gpt-3.5-turbo"]}')
        out.append({str(k): [v] if isinstance(v, str) else list(v) for k, v in entry.items()})
    return out


def translate(data: dict[str, Any]) -> Translation:
    """Reads (and removes) the LiteLLM sections of a config mapping."""
    out = Translation()
    router_settings = _section(data, "router_settings")
    litellm_settings = _section(data, "litellm_settings")
    general = _section(data, "general_settings")
    # litellm_settings first: router_settings is the Router's own and wins in LiteLLM too.
    for section, settings in (("litellm_settings", litellm_settings), ("router_settings", router_settings)):
        for key, value in settings.items():
            _map(out, section, key, resolve_env(value, f"{section}.{key}"))
    for key, value in general.items():
        where = f"general_settings.{key}"
        value = resolve_env(value, where)
        if key == "master_key":
            # As in LiteLLM: a master key turns authentication on for the LLM API.
            out.keys.update({"enabled": True, "master_key": value})
        elif key == "database_url":
            out.keys["database"] = value
        else:
            out.warnings.append(f"{where} has no RouteIQ equivalent; ignored")
    for key, why in OTHER_SECTIONS.items():
        if key in data:
            data.pop(key)
            out.warnings.append(f"{key}: {why}")
    if general:
        data["general_settings"] = general
    for i, entry in enumerate(data.get("model_list") or []):
        if not isinstance(entry, dict):
            continue
        # rpm is RouteIQ's own (model_list[].rpm, per worker); a token budget is not.
        params = entry.get("litellm_params")
        for where, holder in ((f"model_list[{i}]", entry), (f"model_list[{i}].litellm_params", params if isinstance(params, dict) else {})):
            if "tpm" in holder:
                holder.pop("tpm")
                out.warnings.append(f"{where}.tpm: tokens-per-minute limits are not enforced by RouteIQ (rpm is); ignored")
    return out


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.pop(name, None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SettingError(name, f"expected a mapping, got {type(value).__name__}")
    return dict(value)


def _map(out: Translation, section: str, key: str, value: Any) -> None:
    where = f"{section}.{key}"
    seconds, count = _number(float), _number(int)
    if key == "routing_strategy" and section == "router_settings":
        strategy = ROUTING_STRATEGIES.get(str(value), "")
        if strategy:
            out.router["strategy"] = strategy
        else:
            known = "unknown to RouteIQ" if strategy == "" else "has no RouteIQ equivalent"
            out.warnings.append(f"{where}: {value!r} {known}; router.strategy's default (weighted_round_robin) runs")
    elif key == "num_retries":
        out.router["retries"] = count(value, where)
    elif key in ("timeout", "request_timeout"):
        out.router["timeout_s"] = seconds(value, where)
    elif key == "stream_timeout":
        out.router["first_byte_timeout_s"] = seconds(value, where)
    elif key == "allowed_fails":
        # LiteLLM cools a deployment down once its failures exceed allowed_fails.
        out.breaker["consecutive_failures"] = count(value, where) + 1
    elif key == "cooldown_time":
        out.breaker["cooldown_s"] = seconds(value, where)
    elif key in FALLBACK_KEYS:
        out.router[key] = _fallbacks(value, where)
    elif key == "max_fallbacks":
        out.router["max_fallbacks"] = count(value, where)
    elif key == "model_group_alias":
        if not isinstance(value, dict):
            raise SettingError(where, 'expected a mapping like {"gpt-4-turbo": "gpt-4"}')
        out.router["model_group_alias"] = value  # LiteLLM's format is RouteIQ's
    elif key == "default_fallbacks":
        groups = [value] if isinstance(value, str) else value
        if not isinstance(groups, list):
            raise SettingError(where, "expected a list of model groups")
        out.router["fallbacks"] = out.router.get("fallbacks", []) + [{"*": [str(g) for g in groups]}]
    elif key == "drop_params" and section == "litellm_settings":
        out.litellm_params["drop_params"] = bool(value)  # litellm drops what a provider refuses
    elif key == "set_verbose" and section == "litellm_settings":
        if value:
            out.server["log_level"] = "debug"
    else:
        out.warnings.append(f"{where} has no RouteIQ equivalent; ignored")


def apply(data: dict[str, Any], t: Translation) -> dict[str, Any]:
    """`data` with the translation merged in: a key RouteIQ's own section gives wins."""
    router = dict(data.get("router") or {})
    breaker = dict(router.get("breaker") or {})
    for key, value in t.breaker.items():
        if key == "consecutive_failures" and "failure_threshold" in breaker:
            continue
        breaker.setdefault(key, value)
    for key, value in t.router.items():
        router.setdefault(key, value)
    if breaker:
        router["breaker"] = breaker
    if router:
        data["router"] = router
    if t.server:
        server = dict(data.get("server") or {})
        for key, value in t.server.items():
            server.setdefault(key, value)
        data["server"] = server
    if t.keys:
        keys = dict(data.get("keys") or {})
        for key, value in t.keys.items():
            keys.setdefault(key, value)
        data["keys"] = keys
    if t.litellm_params:
        for entry in data.get("model_list") or []:
            if isinstance(entry, dict) and isinstance(entry.get("litellm_params"), dict):
                entry["litellm_params"] = {**t.litellm_params, **entry["litellm_params"]}
    return data
