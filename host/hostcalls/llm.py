"""RouteIQ LLM extension host calls (values travel as CBOR): routeiq_get_llm_request,
routeiq_set_llm_messages, routeiq_set_llm_model, routeiq_get_llm_response."""

from __future__ import annotations

from typing import Any

import cbor2

from routeiq.abi.proxy_wasm import Status

from .group import CallGroup
from .llm_exchange import CHAT_ROLES, LlmExchange

MAX_CBOR_BYTES = 1024 * 1024


def _messages(value: Any) -> list[dict[str, str]] | None:
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if not isinstance(item, dict):
            return None
        role, content = item.get("role"), item.get("content")
        if not isinstance(role, str) or role not in CHAT_ROLES or not (isinstance(content, str) or content is None):
            return None
        out.append({"role": role, "content": content})
    return out


class LlmCalls(CallGroup):
    def _exchange(self) -> LlmExchange | int:
        stream = self.env.stream
        if stream is None or stream.llm is None:
            return Status.NOT_FOUND
        return stream.llm

    def routeiq_get_llm_request(self) -> tuple[int, bytes]:
        exchange = self._exchange()
        if isinstance(exchange, int):
            return exchange, b""
        return Status.OK, exchange.view_cbor()

    def routeiq_set_llm_messages(self, raw: bytes) -> int:
        exchange = self._exchange()
        if isinstance(exchange, int):
            return exchange
        if exchange.forwarded or len(raw) > MAX_CBOR_BYTES:
            return Status.BAD_ARGUMENT
        try:
            # cbor2's decoder bounds recursion and refuses lengths past the input.
            messages = _messages(cbor2.loads(raw))
        except (cbor2.CBORDecodeError, RecursionError, ValueError, OverflowError, MemoryError):
            return Status.PARSE_FAILURE
        if messages is None:
            return Status.PARSE_FAILURE
        exchange.request["messages"] = messages
        exchange.dirty = True
        return Status.OK

    def routeiq_set_llm_model(self, model: str) -> int:
        exchange = self._exchange()
        if isinstance(exchange, int):
            return exchange
        if exchange.forwarded:
            return Status.BAD_ARGUMENT
        if model not in exchange.known_models:
            return Status.NOT_FOUND
        exchange.pinned_model = model
        return Status.OK

    def routeiq_get_llm_response(self) -> tuple[int, bytes]:
        exchange = self._exchange()
        if isinstance(exchange, int):
            return exchange, b""
        if exchange.outcome is None:
            return Status.NOT_FOUND, b""
        return Status.OK, cbor2.dumps(exchange.outcome.as_dict())
