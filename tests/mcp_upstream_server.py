"""A small upstream MCP server for the gateway's tests, built with the official SDK's
MCPServer (FastMCP's name in mcp 2): `python tests/mcp_upstream_server.py PORT TOKEN`
serves Streamable HTTP at http://127.0.0.1:PORT/mcp and answers 401 to any request
without `authorization: Bearer TOKEN` (what the gateway must send upstream)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.types import Receive, Scope, Send


def build(token: str) -> Any:
    server = MCPServer("calc")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def seen_headers(ctx: Context) -> dict[str, str]:
        """The credentials this server received (to show what the gateway forwards)."""
        headers = ctx.headers or {}
        return {"authorization": headers.get("authorization", ""), "x-api-key": headers.get("x-api-key", "")}

    @server.tool()
    async def count(steps: int, ctx: Context) -> str:
        """Count to `steps`, reporting progress at each step."""
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}")
            await asyncio.sleep(0.01)
        return f"counted to {steps}"

    cancelled: list[int] = []

    @server.tool()
    async def wait(ctx: Context) -> str:
        """Report progress until cancelled (then counted by `cancellations`)."""
        try:
            for i in range(1, 100_000):
                await ctx.report_progress(i, None, "waiting")
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise
        return "never cancelled"

    @server.tool()
    def cancellations() -> int:
        """How many `wait` calls were cancelled."""
        return len(cancelled)

    app = server.streamable_http_app()
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    return guarded


if __name__ == "__main__":
    port, token = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(build(token), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
