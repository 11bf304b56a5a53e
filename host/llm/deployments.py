"""Deployments from the config's model list: how to route to them and how to call them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from routeiq.config import ModelEntry
from routeiq.strategies.base import Deployment

Kind = Literal["embedded", "passthrough", "litellm"]


@dataclass(frozen=True)
class LiveDeployment:
    routing: Deployment
    kind: Kind
    api_base: str  # "" for embedded and for litellm-resolved providers
    api_key: str
    upstream_model: str  # the model name the provider expects (no litellm provider prefix)
    litellm_params: dict[str, Any]
    rpm: int | None = None  # requests per minute it takes (model_list rpm), per worker

    @property
    def id(self) -> str:
        return self.routing.id


def _kind(entry: ModelEntry) -> Kind:
    params = entry.litellm_params
    if params.api_base == "embedded":
        return "embedded"
    if entry.model_info.passthrough is False:
        return "litellm"
    openai_compatible = params.model.startswith("openai/") or (params.api_base is not None and "/" not in params.model)
    if entry.model_info.passthrough or openai_compatible:
        if not params.api_base:
            return "litellm"  # no base URL to call directly: let litellm resolve the provider
        return "passthrough"
    return "litellm"


ENV_PREFIX = "os.environ/"


def _resolve_env(value: Any, where: str) -> Any:
    """litellm's `os.environ/NAME` references, resolved now: an unset variable refuses the
    config at startup instead of sending the literal reference as a key later."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        resolved = os.environ.get(name)
        if not name or resolved is None:
            raise ValueError(f"{where}: {value} is not set in the environment")
        return resolved
    if isinstance(value, dict):
        return {k: _resolve_env(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _rpm(value: Any, where: str) -> int | None:
    """litellm_params.rpm (LiteLLM reads it there too): a whole number of at least 1."""
    if value is None:
        return None
    try:
        rpm = int(value)  # an os.environ/ value arrives as a string
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a whole number of requests per minute, got {value!r}") from None
    if rpm < 1 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{where}: expected a whole number of requests per minute of at least 1, got {value!r}")
    return rpm


def build_deployments(entries: list[ModelEntry]) -> list[LiveDeployment]:
    out = []
    seen: dict[str, int] = {}
    for position, entry in enumerate(entries):
        where = f"model_list[{position}].litellm_params"
        resolved = {k: _resolve_env(v, f"{where}.{k}") for k, v in entry.litellm_params.model_dump(exclude_none=True).items()}
        params = entry.litellm_params.model_validate(resolved)
        index = seen.get(entry.model_name, 0)
        seen[entry.model_name] = index + 1
        deployment_id = entry.model_info.id or f"{entry.model_name}#{index}"
        upstream_model = params.model.split("/", 1)[1] if "/" in params.model else params.model
        routing = Deployment(
            id=deployment_id,
            model=entry.model_name,
            provider_model=upstream_model,
            weight=entry.model_info.weight,
            cost_per_1k_tokens=entry.model_info.cost_per_1k_tokens,
            quality=entry.model_info.quality,
        )
        out.append(
            LiveDeployment(
                routing=routing,
                kind=_kind(entry),
                api_base=(params.api_base or "").rstrip("/") if params.api_base != "embedded" else "",
                api_key=params.api_key or "",
                upstream_model=upstream_model,
                litellm_params=resolved,
                rpm=entry.rpm or _rpm(resolved.get("rpm"), f"{where}.rpm"),
            )
        )
    ids = [d.id for d in out]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"model_list: model_info.id values must be unique ({', '.join(repr(i) for i in twice)} used more than once)")
    return out
