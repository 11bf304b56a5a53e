"""Services the demo needs beside the gateway: an auth service for the ext_auth example.

`routeiq demo-auth --port 9101` accepts `Authorization: Bearer demo-token` (user
`demo-user`) and refuses everything else, like a real token introspection endpoint.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DEMO_TOKENS = {"Bearer demo-token": "demo-user"}


async def check(request: Request) -> JSONResponse:
    user = DEMO_TOKENS.get(request.headers.get("authorization", ""))
    if user is None:
        return JSONResponse({"allowed": False}, status_code=403)
    return JSONResponse({"allowed": True, "user": user}, headers={"x-auth-user": user})


def create_demo_auth_service() -> Starlette:
    return Starlette(routes=[Route("/check", check, methods=["GET"])])
