"""Anthropic's Messages API (`/v1/messages`) over the chat path: the request translated to
a chat completion request (served by any deployment, with the same routing, breakers and
retries), the answer and its stream translated back into Anthropic's shapes and events,
errors in Anthropic's envelope.

Translated: system prompts, text and image blocks, tool definitions, tool_choice,
tool_use / tool_result turns, stop_sequences, temperature, top_p, max_tokens,
metadata.user_id, streaming (message_start, content_block_start/delta/stop for text and
tool_use blocks, message_delta with the stop reason and usage, message_stop). Dropped,
having no chat equivalent: top_k, thinking blocks and the thinking setting.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from .sse import SseParser

# Chat finish_reason -> Anthropic stop_reason.
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use", "content_filter": "refusal"}

# HTTP status -> Anthropic error type (their SDKs pick the exception class by status).
_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
    504: "api_error", 529: "overloaded_error",
}  # fmt: skip


class AnthropicRequestError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"), "message": message}}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _image_part(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        raise AnthropicRequestError(f"image source type {source.get('type')!r} is not supported")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_turn(content: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic user turn as chat messages: tool results become `tool` messages."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise AnthropicRequestError(f"{where}.content must be a string or a list of content blocks")
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image_part(block))
        elif kind == "tool_result":
            result = block.get("content")
            text = _text_of(result) if not isinstance(result, str) else result
            out.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text})
        else:
            raise AnthropicRequestError(f"{where}.content[{j}]: block type {kind!r} is not supported")
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_turn(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise AnthropicRequestError(f"{where}.content must be a string or a list of content blocks")
    text, calls = [], []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append({"id": str(block.get("id", "")), "type": "function", "function": {"name": str(block.get("name", "")), "arguments": json.dumps(block.get("input") or {})}})
        # thinking / redacted_thinking: no chat equivalent
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_choice(choice: Any) -> Any:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        return {"type": "function", "function": {"name": str(choice.get("name", ""))}}
    raise AnthropicRequestError(f"tool_choice type {kind!r} is not supported")


def to_chat(request: Any) -> dict[str, Any]:
    """The chat completion request for an Anthropic Messages request."""
    if not isinstance(request, dict):
        raise AnthropicRequestError("the body must be a JSON object")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise AnthropicRequestError("model: Field required")
    max_tokens = request.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise AnthropicRequestError("max_tokens: Field required (a positive integer)")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise AnthropicRequestError("messages: Field required (a non-empty list)")
    out_messages: list[dict[str, Any]] = []
    system = request.get("system")
    if system:
        out_messages.append({"role": "system", "content": _text_of(system) if not isinstance(system, str) else system})
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            out_messages.extend(_user_turn(message.get("content"), where))
        elif role == "assistant":
            out_messages.append(_assistant_turn(message.get("content"), where))
        else:
            raise AnthropicRequestError(f"{where}.role must be 'user' or 'assistant'")
    chat: dict[str, Any] = {"model": model, "messages": out_messages, "max_tokens": max_tokens}
    for key in ("temperature", "top_p"):
        if key in request:
            chat[key] = request[key]
    if request.get("stop_sequences"):
        chat["stop"] = request["stop_sequences"]
    if isinstance(request.get("metadata"), dict) and request["metadata"].get("user_id"):
        chat["user"] = str(request["metadata"]["user_id"])
    tools = request.get("tools")
    if tools:
        chat["tools"] = [
            {"type": "function", "function": {"name": str(t.get("name", "")), "description": str(t.get("description", "")), "parameters": t.get("input_schema") or {"type": "object"}}}
            for t in tools
            if isinstance(t, dict)
        ]
    if "tool_choice" in request:
        chat["tool_choice"] = _tool_choice(request["tool_choice"])
    if request.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # message_delta carries the usage
    return chat


def _arguments(text: Any) -> Any:
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def from_chat(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """The Anthropic message for a chat completion answer (`model`: what the client asked)."""
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": _text_of(message["content"]) if not isinstance(message["content"], str) else message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": str(call.get("id", "")), "name": str(function.get("name", "")), "input": _arguments(function.get("arguments"))})
    usage = answer.get("usage") or {}
    return {
        "id": "msg_" + str(answer.get("id", "")).removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": int(usage.get("prompt_tokens") or 0), "output_tokens": int(usage.get("completion_tokens") or 0)},
    }


def _event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: ".encode() + json.dumps(data).encode() + b"\n\n"


class StreamTranslator:
    """Chat completion chunks (SSE) in, Anthropic stream events out."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._parser = SseParser()
        self._started = False
        self._ended = False
        self._block: str | None = None  # "text" or "tool_use": the open content block
        self._index = -1
        self._tools: dict[int, int] = {}  # chat tool_call index -> content block index
        self._stop = "end_turn"
        self._usage: dict[str, int] = {}

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._index += 1
        self._block = kind
        return out + [_event({"type": "content_block_start", "index": self._index, "content_block": block})]

    def _close(self) -> list[bytes]:
        if self._block is None:
            return []
        self._block = None
        return [_event({"type": "content_block_stop", "index": self._index})]

    def _start(self, chunk: dict[str, Any]) -> list[bytes]:
        self._started = True
        message = {
            "id": "msg_" + str(chunk.get("id", "")).removeprefix("chatcmpl-"), "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
        }  # fmt: skip
        return [_event({"type": "message_start", "message": message})]

    def _chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        out = [] if self._started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._block != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out.append(_event({"type": "content_block_delta", "index": self._index, "delta": {"type": "text_delta", "text": text}}))
            for call in delta.get("tool_calls") or ():
                position = int(call.get("index", 0))
                function = call.get("function") or {}
                if position not in self._tools:
                    out += self._open("tool_use", {"type": "tool_use", "id": str(call.get("id", "")), "name": str(function.get("name", "")), "input": {}})
                    self._tools[position] = self._index
                if function.get("arguments"):
                    out.append(_event({"type": "content_block_delta", "index": self._tools[position], "delta": {"type": "input_json_delta", "partial_json": function["arguments"]}}))
            if choice.get("finish_reason"):
                self._stop = _STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def _finish(self) -> list[bytes]:
        if self._ended:
            return []
        self._ended = True
        out = ([] if self._started else self._start({})) + self._close()
        usage = {"input_tokens": int(self._usage.get("prompt_tokens") or 0), "output_tokens": int(self._usage.get("completion_tokens") or 0)}
        out.append(_event({"type": "message_delta", "delta": {"stop_reason": self._stop, "stop_sequence": None}, "usage": usage}))
        out.append(_event({"type": "message_stop"}))
        return out

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._parser.feed(data):
            if event.data.strip() == b"[DONE]":
                out += self._finish()
                continue
            try:
                chunk = json.loads(event.data)
            except json.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk:  # the gateway's mid-stream failure event
                message = chunk["error"].get("message", "stream failed") if isinstance(chunk["error"], dict) else str(chunk["error"])
                self._ended = True
                out.append(_event({"type": "error", "error": {"type": "api_error", "message": message}}))
                continue
            out += self._chunk(chunk)
        return b"".join(out)

    async def translate(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for data in chunks:
            out = self.feed(data)
            if out:
                yield out
        tail = b"".join(self._finish())
        if tail:
            yield tail
