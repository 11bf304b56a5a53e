"""The admin API's request guard and error shape, shared by every admin route (plugins,
routing, and the MCP tools' routes mounted from routeiq.mcp)."""

from __future__ import annotations

from typing import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from routeiq.gateway.operator_changes import StateNotStored

from .auth import AdminKey, allows
from .body import BodyRefused
from .sessions import ConsoleSessions, request_caller

Handler = Callable[[Request], Awaitable[Response]]


def admin_error(status: int, message: str, code: str) -> JSONResponse:
    # A body refused unread leaves the connection unusable for another request.
    headers = {"connection": "close"} if status == 413 else None
    return JSONResponse({"error": {"message": message, "type": "admin_error", "code": code}}, status_code=status, headers=headers)


def admin_guard(keys: Sequence[AdminKey], sessions: ConsoleSessions | None = None) -> Callable[[str, Handler], Handler]:
    """`guard(role, handler)`: the handler behind an admin key of at least `role` (in a
    header, or a console session whose writes carry its CSRF token); body refusals and
    unrecorded changes (503 state_not_stored) answered in the admin shape."""

    def guarded(role: str, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            presented = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-routeiq-admin-key")
            key, csrf_refusal = request_caller(request, keys, sessions, presented)
            if csrf_refusal is not None:
                return admin_error(403, csrf_refusal, "csrf_token_missing")
            if key is None:
                return admin_error(401, "a valid admin API key is required", "unauthenticated")
            if not allows(key.role, role):
                return admin_error(403, f"role {key.role!r} may not do this (needs {role})", "forbidden")
            request.state.admin_key = key
            try:
                return await handler(request)
            except BodyRefused as refused:
                return admin_error(refused.status, refused.message, refused.code)
            except StateNotStored as exc:  # never acknowledge what other nodes will not see
                return admin_error(503, f"{exc}; nothing was changed", "state_not_stored")

        endpoint.__doc__ = handler.__doc__
        return endpoint

    return guarded


__all__ = ["admin_error", "admin_guard", "Handler"]
