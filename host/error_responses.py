"""Error responses in the OpenAI error shape, as raw ASGI sends."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send


def error_body(message: str, type_: str, code: str | None = None, **extra: Any) -> bytes:
    error: dict[str, Any] = {"message": message, "type": type_, "param": None, "code": code}
    error.update(extra)
    return json.dumps({"error": error}).encode()


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
