"""Deployments from the config's model list: how to route to them and how to call them."""

from __future__ import annotations

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


def build_deployments(entries: list[ModelEntry]) -> list[LiveDeployment]:
    out = []
    seen: dict[str, int] = {}
    for entry in entries:
        params = entry.litellm_params
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
                litellm_params=params.model_dump(exclude_none=True),
            )
        )
    ids = [d.id for d in out]
    if len(set(ids)) != len(ids):
        raise ValueError("model_list: model_info.id values must be unique")
    return out
