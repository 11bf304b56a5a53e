"""Error responses in the OpenAI error shape: raw ASGI sends, and the exception handlers
that give Starlette's own 404 / 405 the same shape."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send


def error_body(message: str, type_: str, code: str | None = None, **extra: Any) -> bytes:
    error: dict[str, Any] = {"message": message, "type": type_, "param": None, "code": code}
    error.update(extra)
    return json.dumps({"error": error}).encode()


def client_error_body(path: str, status: int, message: str, type_: str, code: str | None = None, **extra: Any) -> bytes:
    """`error_body`, or Anthropic's envelope for a request to /v1/messages (its SDKs read
    that one); the extra fields (the failing plugin) go in both."""
    if path in ANTHROPIC_PATHS:
        kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return json.dumps({"type": "error", "error": {"type": kind, "message": message, **extra}}).encode()
    return error_body(message, type_, code, **extra)


async def send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], content_type: bytes = b"application/json"
) -> None:
    names = {k.lower() for k, _ in headers}
    out = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    if b"content-type" not in names and body:
        out.append((b"content-type", content_type))
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, status: int, message: str, type_: str, code: str | None = None, headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> None:
    await send_bytes(send, status, error_body(message, type_, code, **extra), headers or [])


# Anthropic's Messages API answers its own error envelope (their SDKs read it).
ANTHROPIC_PATHS = frozenset({"/v1/messages", "/messages"})
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error"}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_exception_as_json(request: Request, exc: Exception) -> Response:
    """Starlette's 404 / 405 (and any HTTPException) in the client's error shape instead
    of plain text: OpenAI's everywhere, Anthropic's under /v1/messages."""
    assert isinstance(exc, HTTPException)
    status, path = exc.status_code, request.url.path
    message = f"no route {request.method} {path}" if status == 404 else (f"{request.method} is not allowed on {path}" if status == 405 else str(exc.detail))
    if path in ANTHROPIC_PATHS:
        kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status, headers=exc.headers)
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": _HTTP_CODES.get(status)}}, status_code=status, headers=exc.headers)


def exception_handlers() -> dict[Any, Any]:
    """For `Starlette(exception_handlers=...)`."""
    return {HTTPException: http_exception_as_json}
