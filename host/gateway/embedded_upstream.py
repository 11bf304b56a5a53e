"""The built-in demo upstream: a deterministic OpenAI-compatible mock, plus /echo.

It lets the gateway run with no keys and no network. Replies echo the last user
message, so what plugins did to a request (redaction, tagging) is visible in the answer.
`x-mock-chunk-delay-ms` slows streamed chunks down (for streaming tests and demos).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MOCK_MODELS = ("routeiq-mock", "routeiq-mock-large")


def _error(status: int, message: str, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "code": None}}, status_code=status)


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


async def models(_: Request) -> JSONResponse:
    now = 1_700_000_000
    return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "routeiq"} for m in MOCK_MODELS]})


async def chat_completions(request: Request) -> Response:
    try:
        payload = json.loads(await request.body() or b"null")
    except json.JSONDecodeError as exc:
        return _error(400, f"request body is not valid JSON: {exc.msg}")
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        return _error(400, "'messages' must be a list")
    model = str(payload.get("model") or MOCK_MODELS[0])
    prompt = _last_user_text(payload["messages"])
    reply = f"You said: {prompt}" if prompt else "Hello from the RouteIQ mock upstream."
    prompt_tokens = sum(_tokens(_last_user_text([m])) for m in payload["messages"] if isinstance(m, dict))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": _tokens(reply), "total_tokens": prompt_tokens + _tokens(reply)}
    created = int(time.time())
    completion_id = "chatcmpl-mock-" + hashlib.sha256(f"{model}\0{prompt}".encode()).hexdigest()[:16]
    if not payload.get("stream"):
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": usage,
            }
        )
    delay = float(request.headers.get("x-mock-chunk-delay-ms", "0") or 0) / 1000.0
    include_usage = bool((payload.get("stream_options") or {}).get("include_usage", True))

    async def events() -> AsyncIterator[bytes]:
        words = reply.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": ({"role": "assistant", "content": piece} if i == 0 else {"content": piece}), "finish_reason": None}],
            }
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            if delay:
                await asyncio.sleep(delay)
        final: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        if include_usage:
            final["usage"] = usage
        yield b"data: " + json.dumps(final).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("utf-8", "replace"),
            "body_length": len(body),
        }
    )


def create_embedded_upstream() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )
