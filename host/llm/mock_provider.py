"""A deterministic OpenAI-compatible mock provider (no keys, no network).

Replies echo the last user message. Per model: added latency, a share of failures (HTTP
500) and of timeouts (the call hangs), spread evenly over calls rather than drawn at
random, so a failure rate of 0.25 fails exactly every fourth call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from . import mock_operations

if TYPE_CHECKING:
    from .operations import OperationRequest


@dataclass
class MockBehaviour:
    latency_ms: float = 0.0
    failure_rate: float = 0.0
    timeout_rate: float = 0.0
    chunk_delay_ms: float = 0.0


class MockFailure(Exception):
    """The mock was told to fail this call (answer 500)."""


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class MockProvider:
    def __init__(self, behaviours: Mapping[str, MockBehaviour] | None = None) -> None:
        self.behaviours: dict[str, MockBehaviour] = dict(behaviours or {})
        self._calls: dict[str, int] = {}

    def behaviour(self, model: str) -> MockBehaviour:
        return self.behaviours.get(model) or self.behaviours.get("*") or MockBehaviour()

    def set_behaviour(self, model: str, **changes: float) -> None:
        current = self.behaviour(model)
        self.behaviours[model] = MockBehaviour(**{**current.__dict__, **changes})

    @staticmethod
    def _hits(n: int, rate: float) -> bool:
        # Evenly spread: call n fails when floor((n+1)*rate) steps up.
        return rate > 0 and int((n + 1) * rate) > int(n * rate)

    async def _prelude(self, model: str, timeout_s: float) -> None:
        n = self._calls.get(model, 0)
        self._calls[model] = n + 1
        b = self.behaviour(model)
        if self._hits(n, b.timeout_rate):
            await asyncio.sleep(timeout_s + 1.0)
        if b.latency_ms:
            await asyncio.sleep(b.latency_ms / 1000.0)
        if self._hits(n, b.failure_rate):
            raise MockFailure(f"mock model {model} failed (failure_rate {b.failure_rate})")

    def _reply(self, body: Mapping[str, Any], model: str) -> tuple[str, str, dict[str, int]]:
        messages = body.get("messages") or []
        prompt = last_user_text(messages)
        reply = f"You said: {prompt}" if prompt else "Hello from the RouteIQ mock upstream."
        prompt_tokens = sum(_tokens(last_user_text([m])) for m in messages if isinstance(m, dict))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": _tokens(reply), "total_tokens": prompt_tokens + _tokens(reply)}
        completion_id = "chatcmpl-mock-" + hashlib.sha256(f"{model}\0{prompt}".encode()).hexdigest()[:16]
        return completion_id, reply, usage

    async def complete(self, body: Mapping[str, Any], model: str, timeout_s: float = 60.0) -> dict[str, Any]:
        await self._prelude(model, timeout_s)
        completion_id, reply, usage = self._reply(body, model)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": usage,
        }

    async def stream(self, body: Mapping[str, Any], model: str, timeout_s: float = 60.0, chunk_delay_ms: float | None = None) -> AsyncIterator[bytes]:
        """SSE bytes. Failures happen before the first byte (like a refused request)."""
        await self._prelude(model, timeout_s)
        completion_id, reply, usage = self._reply(body, model)
        delay = (chunk_delay_ms if chunk_delay_ms is not None else self.behaviour(model).chunk_delay_ms) / 1000.0
        include_usage = bool((body.get("stream_options") or {}).get("include_usage", False))
        created = int(time.time())
        return self._events(completion_id, created, model, reply, usage, delay, include_usage)

    async def _events(self, cid: str, created: int, model: str, reply: str, usage: dict[str, int], delay: float, include_usage: bool) -> AsyncIterator[bytes]:
        for i, word in enumerate(reply.split(" ")):
            piece = word if i == 0 else " " + word
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            if delay:
                await asyncio.sleep(delay)
        final: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield b"data: " + json.dumps(final).encode() + b"\n\n"
        if include_usage:  # as OpenAI: a last chunk of its own, with no choices
            tail = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage}
            yield b"data: " + json.dumps(tail).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def operation(self, request: "OperationRequest", model: str, timeout_s: float = 60.0) -> tuple[str, bytes]:
        """(content type, body) for an operation besides chat (mock_operations.py)."""
        await self._prelude(model, timeout_s)
        return mock_operations.answer(request, model)

    async def operation_stream(self, request: "OperationRequest", model: str, timeout_s: float = 60.0) -> AsyncIterator[bytes]:
        await self._prelude(model, timeout_s)
        return mock_operations.stream(request, model)
