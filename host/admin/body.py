"""Admin request bodies: read under a byte limit before anything is buffered whole, and
JSON parsed strictly (no NaN/Infinity, valid UTF-8, bounded nesting)."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request

from routeiq import strict_json


class BodyRefused(Exception):
    """The body cannot be accepted; `status` and `code` are what the client is told."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


async def read_limited(request: Request, limit: int, setting: str) -> bytes:
    """The body, or BodyRefused(413) as soon as it is known to exceed `limit`: from
    Content-Length before reading, else counted while it streams (chunked)."""
    too_large = BodyRefused(413, f"the body is larger than {limit} bytes ({setting})", "body_too_large")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or not declared.isascii():
            raise BodyRefused(400, "invalid Content-Length", "bad_request")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyRefused(400, "the client went away before the body was complete", "bad_request") from None
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """Strict JSON or BodyRefused(400) saying what is wrong and where."""
    try:
        return strict_json.loads(raw)
    except strict_json.JsonInputError as exc:
        where = f" at {exc.param}" if exc.param else ""
        raise BodyRefused(400, f"the body must be strict JSON: {exc.message}{where}", "invalid_json") from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, null deletes, anything else
    replaces. The recursion is bounded: strict_json caps the patch's nesting."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
