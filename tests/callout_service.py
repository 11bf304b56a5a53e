"""A small HTTP service on loopback that plugins call out to in tests."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

TOKENS = {"Bearer good-token": "alice"}


async def check(request: Request) -> Response:
    user = TOKENS.get(request.headers.get("authorization", ""))
    if user is None:
        return JSONResponse({"allowed": False}, status_code=403)
    return JSONResponse({"allowed": True}, headers={"x-auth-user": user})


async def echo(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"{request.method} {request.url.path} {body.decode()}", headers={"x-echo": request.headers.get("x-probe-echo", "none")})


async def slow(_: Request) -> Response:
    await asyncio.sleep(2)
    return PlainTextResponse("late")


async def redirect(_: Request) -> Response:
    return RedirectResponse("http://10.0.0.1/internal", status_code=302)


async def big(_: Request) -> Response:
    return PlainTextResponse("x" * 200_000)


def create_callout_service() -> Starlette:
    return Starlette(
        routes=[
            Route("/check", check),
            Route("/echo", echo, methods=["GET", "POST"]),
            Route("/slow", slow),
            Route("/redirect", redirect),
            Route("/big", big),
        ]
    )


class ClusterEndpoint:
    """One endpoint of a test cluster: records every request (method, Host, path) and
    answers as the Go SDK example's envoy.yaml static reply does (`/ok`: 200 with
    `example body\\n`, `/fail`: 503); any other path answers `<name> <method> <Host> <path>`."""

    def __init__(self, name: str = "endpoint", hold_s: float = 0.0) -> None:
        self.name = name
        self.hold_s = hold_s  # each answer takes this long (to see requests overlap)
        self.received: list[tuple[str, str, str]] = []  # appended on the server's loop, read by the test
        self.in_flight = 0
        self.most_in_flight = 0
        self.app = Starlette(routes=[Route("/{path:path}", self._answer, methods=["GET", "POST"])])

    async def _answer(self, request: Request) -> Response:
        host = request.headers.get("host", "")
        self.received.append((request.method, host, request.url.path))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hold_s:
                await asyncio.sleep(self.hold_s)
        finally:
            self.in_flight -= 1
        if request.url.path == "/ok":
            return PlainTextResponse("example body\n")
        if request.url.path == "/fail":
            return Response(status_code=503)
        return PlainTextResponse(f"{self.name} {request.method} {host} {request.url.path}")
