"""The LLM request and response of one exchange, as plugins see them through routeiq_*.

The filter parses the chat request before the plugins run; plugins read it, replace its
messages or pin a model (routeiq_set_llm_*); the LLM app routes what is left and records
the outcome here for proxy_on_log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LlmOutcome:
    model: str = ""
    deployment: str = ""
    provider_model: str = ""
    strategy: str = ""
    status: int = 0
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "deployment": self.deployment,
            "provider_model": self.provider_model,
            "strategy": self.strategy,
            "status": self.status,
            "latency_ms": float(self.latency_ms),
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
        }


@dataclass
class LlmExchange:
    request: dict[str, Any]
    known_models: frozenset[str] = frozenset()
    pinned_model: str | None = None
    forwarded: bool = False  # once true, the request can no longer change
    dirty: bool = False  # messages changed through routeiq_set_llm_messages
    outcome: LlmOutcome | None = None
    api_key_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: bytes, known_models: frozenset[str]) -> "LlmExchange | None":
        try:
            request = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            return None
        return cls(request, known_models)

    def view(self) -> dict[str, Any]:
        """The request as routeiq_get_llm_request returns it (CBOR-encoded by the caller)."""
        request = self.request
        messages = [
            {"role": str(m.get("role", "")), "content": m.get("content") if isinstance(m.get("content"), str) or m.get("content") is None else json.dumps(m.get("content"))}
            for m in request.get("messages", [])
            if isinstance(m, dict)
        ]
        params = {k: v for k, v in request.items() if k not in ("model", "messages", "stream")}
        return {"model": str(self.pinned_model or request.get("model") or ""), "messages": messages, "stream": bool(request.get("stream")), "params": params}

    def body(self) -> bytes:
        return json.dumps(self.request).encode()
