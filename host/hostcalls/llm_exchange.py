"""The LLM request and response of one exchange, as plugins see them through routeiq_*.

The filter parses the chat request before the plugins run; plugins read it, replace its
messages or pin a model (routeiq_set_llm_*); the LLM app routes what is left and records
the outcome here for proxy_on_log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import cbor2

from routeiq.strict_json import JsonInputError, loads

CHAT_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


class ChatRequestError(JsonInputError):
    """A chat request the gateway refuses with 400 (`param` names the field)."""


def check_chat_request(request: Any) -> dict[str, Any]:
    """The shape the gateway relies on; everything else is the deployment's to judge."""
    if not isinstance(request, dict):
        raise ChatRequestError("the body must be a JSON object with a 'messages' list")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ChatRequestError("'messages' must be a non-empty list of message objects", "messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ChatRequestError(f"{where} must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if not isinstance(role, str) or role not in CHAT_ROLES:
            raise ChatRequestError(f"{where}.role must be one of {', '.join(sorted(CHAT_ROLES))}", f"{where}.role")
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise ChatRequestError(f"{where}.content[{j}] must be a content part object", f"{where}.content[{j}]")
        elif not (content is None or isinstance(content, str)):
            raise ChatRequestError(f"{where}.content must be a string, a list of content parts or null", f"{where}.content")
    if "model" in request and not isinstance(request["model"], str):
        raise ChatRequestError("'model' must be a string", "model")
    if "stream" in request and not isinstance(request["stream"], bool):
        raise ChatRequestError("'stream' must be a boolean", "stream")
    return request


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
    consumer: Any = None  # the authenticated virtual key (identity.Consumer), charged as the request settles
    charged: bool = False
    # view_cbor()'s last answer and what it was built from (compared by identity).
    _view_cache: tuple[Any, Any, str | None, bytes] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, body: bytes, known_models: frozenset[str]) -> "LlmExchange":
        """Raises ChatRequestError (a 400 for the client) for anything but a chat request."""
        try:
            request = loads(body or b"null")
        except ChatRequestError:
            raise
        except JsonInputError as exc:
            raise ChatRequestError(exc.message, exc.param) from None
        return cls(check_chat_request(request), known_models)

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

    def view_cbor(self) -> bytes:
        """view() as CBOR. Every plugin of the chain that reads the request asks for it;
        it is encoded again only once the request, its messages or the pinned model were
        replaced (the only ways the host changes them before forwarding). Once forwarded,
        native plugins may edit the request in place: no cache then."""
        if self.forwarded:
            return cbor2.dumps(self.view())
        request = self.request
        messages = request.get("messages")
        cached = self._view_cache
        if cached is not None and cached[0] is request and cached[1] is messages and cached[2] == self.pinned_model:
            return cached[3]
        encoded = cbor2.dumps(self.view())
        self._view_cache = (request, messages, self.pinned_model, encoded)
        return encoded

    def body(self) -> bytes:
        return json.dumps(self.request).encode()
