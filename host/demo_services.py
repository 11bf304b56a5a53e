"""Services the demo needs beside the gateway: an auth service for the ext_auth example
and a rates service for the currency_convert tool.

`routeiq demo-auth --port 9101` serves `GET /check`, which accepts
`Authorization: Bearer demo-token` (user `demo-user`) and refuses everything else, like a
real token introspection endpoint, and `GET /rates?from=EUR&to=USD`, which answers
`{"from": "EUR", "to": "USD", "rate": 1.08}` from a fixed table (404 for a pair it lacks).
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


# Units of each currency per US dollar (fixed: a demo, not a market).
PER_USD = {"USD": 1.0, "EUR": 0.925, "GBP": 0.79, "JPY": 151.0, "CHF": 0.88}


async def rates(request: Request) -> JSONResponse:
    source, target = request.query_params.get("from", ""), request.query_params.get("to", "")
    if source not in PER_USD or target not in PER_USD:
        return JSONResponse({"error": f"no rate for {source!r} to {target!r}"}, status_code=404)
    return JSONResponse({"from": source, "to": target, "rate": round(PER_USD[target] / PER_USD[source], 6)})


def create_demo_auth_service() -> Starlette:
    return Starlette(routes=[Route("/check", check, methods=["GET"]), Route("/rates", rates, methods=["GET"])])
