"""The built-in demo upstream: a deterministic OpenAI-compatible mock, plus /echo.

It lets the gateway run with no keys and no network. Replies echo the last user
message, so what plugins did to a request (redaction, tagging) is visible in the answer.
`x-mock-chunk-delay-ms` slows streamed chunks down (for streaming tests and demos).
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from routeiq.llm.mock_provider import MockFailure, MockProvider

MOCK_MODELS = ("routeiq-mock", "routeiq-mock-large")


def _error(status: int, message: str, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "code": None}}, status_code=status)


async def models(_: Request) -> JSONResponse:
    now = 1_700_000_000
    return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "routeiq"} for m in MOCK_MODELS]})


def chat_completions_endpoint(provider: MockProvider):  # type: ignore[no-untyped-def]
    async def chat_completions(request: Request) -> Response:
        try:
            payload = json.loads(await request.body() or b"null")
        except json.JSONDecodeError as exc:
            return _error(400, f"request body is not valid JSON: {exc.msg}")
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return _error(400, "'messages' must be a list")
        model = str(payload.get("model") or MOCK_MODELS[0])
        try:
            if not payload.get("stream"):
                return JSONResponse(await provider.complete(payload, model))
            delay = float(request.headers.get("x-mock-chunk-delay-ms", "0") or 0)
            events = await provider.stream(payload, model, chunk_delay_ms=delay)
        except MockFailure as exc:
            return _error(500, str(exc), "server_error")
        return StreamingResponse(events, media_type="text/event-stream", headers={"cache-control": "no-cache"})

    return chat_completions


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


def create_embedded_upstream(provider: MockProvider | None = None) -> Starlette:
    """The mock as an HTTP app (also what tests serve on loopback as a "real" upstream)."""
    provider = provider or MockProvider()
    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions_endpoint(provider), methods=["POST"]),
            Route("/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )
