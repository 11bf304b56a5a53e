"""The built-in demo upstream: a deterministic OpenAI-compatible mock, plus /echo.

It lets the gateway run with no keys and no network. Replies echo the last user
message, so what plugins did to a request (redaction, tagging) is visible in the answer.
`x-mock-chunk-delay-ms` slows streamed chunks down (for streaming tests and demos).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from routeiq.error_responses import exception_handlers

from routeiq.hostcalls.llm_exchange import check_chat_request
from routeiq.llm.mock_provider import MockFailure, MockProvider
from routeiq.llm.operations import OPERATIONS, Operation, OperationRequestError, read_operation_request
from routeiq.strict_json import JsonInputError, loads

MOCK_MODELS = ("routeiq-mock", "routeiq-mock-large")


def _error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": None}}, status_code=status)


async def models(_: Request) -> JSONResponse:
    now = 1_700_000_000
    return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "routeiq"} for m in MOCK_MODELS]})


def chat_completions_endpoint(provider: MockProvider):  # type: ignore[no-untyped-def]
    async def chat_completions(request: Request) -> Response:
        try:
            payload = check_chat_request(loads(await request.body() or b"null"))
        except JsonInputError as exc:
            return _error(400, exc.message, param=exc.param)
        model = payload.get("model") or MOCK_MODELS[0]
        try:
            delay = float(request.headers.get("x-mock-chunk-delay-ms", "0") or 0)
            if not 0 <= delay <= 60_000:  # also refuses nan and inf
                raise ValueError
        except ValueError:
            return _error(400, "x-mock-chunk-delay-ms must be a number of milliseconds (0-60000)")
        try:
            if not payload.get("stream"):
                return JSONResponse(await provider.complete(payload, model))
            events = await provider.stream(payload, model, chunk_delay_ms=delay)
        except MockFailure as exc:
            return _error(500, str(exc), "server_error")
        return StreamingResponse(events, media_type="text/event-stream", headers={"cache-control": "no-cache"})

    return chat_completions


def operation_endpoint(provider: MockProvider, operation: Operation):  # type: ignore[no-untyped-def]
    """The mock's answer to one of the other OpenAI operations (embeddings, ...)."""

    async def endpoint(request: Request) -> Response:
        try:
            parsed = await read_operation_request(operation, request)
        except OperationRequestError as exc:
            return _error(400, exc.message, param=exc.param)
        try:
            if parsed.stream:
                return StreamingResponse(await provider.operation_stream(parsed, parsed.model), media_type="text/event-stream", headers={"cache-control": "no-cache"})
            content_type, content = await provider.operation(parsed, parsed.model)
        except MockFailure as exc:
            return _error(500, str(exc), "server_error")
        return Response(content, media_type=content_type)

    return endpoint


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
            *(Route(op.path, operation_endpoint(provider, op), methods=["POST"]) for op in OPERATIONS),
            Route("/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ],
        exception_handlers=exception_handlers(),
    )
