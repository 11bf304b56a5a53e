"""RouteIQ LLM extension host calls (values travel as CBOR): routeiq_get_llm_request,
routeiq_set_llm_messages, routeiq_set_llm_model, routeiq_get_llm_response."""

from __future__ import annotations

from typing import Any

import cbor2

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import Status

from .llm_exchange import CHAT_ROLES, LlmExchange
from .memory import return_bytes
from .state import HostEnv

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


class LlmCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def _exchange(self, call: str) -> LlmExchange | int:
        denied = self.env.require(call, Capability.LLM_REQUEST)
        if denied is not None:
            return denied
        stream = self.env.stream
        if stream is None or stream.llm is None:
            return Status.NOT_FOUND
        return stream.llm

    def routeiq_get_llm_request(self, ret_data: int, ret_size: int) -> int:
        self.env.vm.check_writable((ret_data, 4), (ret_size, 4))
        exchange = self._exchange("routeiq_get_llm_request")
        if isinstance(exchange, int):
            return exchange
        return return_bytes(self.env, cbor2.dumps(exchange.view()), ret_data, ret_size)

    def routeiq_set_llm_messages(self, data: int, size: int) -> int:
        raw = self.env.vm.read(data, size)
        exchange = self._exchange("routeiq_set_llm_messages")
        if isinstance(exchange, int):
            return exchange
        if exchange.forwarded:
            return Status.BAD_ARGUMENT
        if size > MAX_CBOR_BYTES:
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

    def routeiq_set_llm_model(self, data: int, size: int) -> int:
        raw = self.env.vm.read(data, size)
        exchange = self._exchange("routeiq_set_llm_model")
        if isinstance(exchange, int):
            return exchange
        if exchange.forwarded:
            return Status.BAD_ARGUMENT
        model = raw.decode("utf-8", "replace")
        if model not in exchange.known_models:
            return Status.NOT_FOUND
        exchange.pinned_model = model
        return Status.OK

    def routeiq_get_llm_response(self, ret_data: int, ret_size: int) -> int:
        self.env.vm.check_writable((ret_data, 4), (ret_size, 4))
        exchange = self._exchange("routeiq_get_llm_response")
        if isinstance(exchange, int):
            return exchange
        if exchange.outcome is None:
            return Status.NOT_FOUND
        return return_bytes(self.env, cbor2.dumps(exchange.outcome.as_dict()), ret_data, ret_size)
