"""Long MCP tool calls with the official client SDK against a real uvicorn: progress
notifications while a Wasm call runs (for a client that sent a progressToken), and a
client's cancel stopping the running guest (its VM replaced) while the gateway keeps
serving."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, Callable

import httpx

from mcp.client.session import ClientSession

from test_mcp import HOSTILE, UNIT, policy_for, session, tool

# A deadline far beyond the test's own waits: only the cancel can stop the loop in time.
LONG = {"timeout_ms": 600_000, "fuel": 10**18}


def start(make_app: Callable[..., Any], live: Callable[[Any], str], tools: list[dict[str, Any]]) -> tuple[Any, str]:
    app = make_app([], policy=policy_for(*[t["name"] for t in tools]), mcp={"tools": tools, "progress_interval_ms": 50})
    return app, live(app)


def test_progress_notifications_then_cancel_stops_the_running_wasm_call(make_app: Callable[..., Any], live: Callable[[Any], str]) -> None:
    app, base = start(make_app, live, [tool("hostile_tool", HOSTILE, limits=LONG), tool("unit_convert", UNIT)])

    async def work(s: ClientSession) -> Any:
        updates: list[tuple[float, float | None, str | None]] = []
        enough = asyncio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            updates.append((progress, total, message))
            if len(updates) >= 3:
                enough.set()

        call = asyncio.ensure_future(s.call_tool("hostile_tool", {"mode": "loop"}, progress_callback=on_progress))
        await asyncio.wait_for(enough.wait(), 120)
        # Other tools and requests are served while the loop runs (it is off the event loop).
        other = await s.call_tool("unit_convert", {"value": 1, "from": "km", "to": "m"})
        call.cancel()  # the SDK sends notifications/cancelled for the abandoned request
        with contextlib.suppress(asyncio.CancelledError):
            await call
        # One VM per tool: this call can only run once the looping one was stopped.
        after = await asyncio.wait_for(s.call_tool("hostile_tool", {"mode": "echo"}), 120)
        return updates, other, after

    updates, other, after = session(base, work)
    progress = [u[0] for u in updates]
    assert progress == sorted(progress) and progress[0] > 0
    assert all(total == 600_000 for _, total, _ in updates) and "hostile_tool running for" in (updates[0][2] or "")
    assert other.structured_content["value"] == 1000.0
    assert not after.is_error and after.structured_content == {"status": 0}
    stats = app.state.gateway.tool_set.tools["hostile_tool"].stats
    assert (stats.cancelled, stats.traps) == (1, 0)
    metrics = httpx.get(base + "/metrics", trust_env=False).text
    assert 'routeiq_mcp_tool_calls_total{outcome="cancelled",tool="hostile_tool"} 1.0' in metrics
    assert 'routeiq_mcp_tool_calls_total{outcome="ok",tool="hostile_tool"} 1.0' in metrics


def test_no_progress_without_a_token_and_the_deadline_still_holds(make_app: Callable[..., Any], live: Callable[[Any], str]) -> None:
    app, base = start(make_app, live, [tool("hostile_tool", HOSTILE, limits={"timeout_ms": 300, "fuel": 10**18})])

    async def work(s: ClientSession) -> Any:
        return await s.call_tool("hostile_tool", {"mode": "loop"}), await s.call_tool("hostile_tool", {"mode": "echo"})

    looped, after = session(base, work)
    assert looped.is_error and "300 ms deadline (limits.timeout_ms)" in looped.content[0].text
    assert after.structured_content == {"status": 0}
    stats = app.state.gateway.tool_set.tools["hostile_tool"].stats
    assert (stats.traps, stats.cancelled) == (1, 0)


def test_stateless_mode_serves_calls_and_progress_without_a_session(make_app: Callable[..., Any], live: Callable[[Any], str]) -> None:
    tools = [tool("hostile_tool", HOSTILE, limits={"timeout_ms": 400, "fuel": 10**18}), tool("unit_convert", UNIT)]
    app = make_app([], policy=policy_for("hostile_tool", "unit_convert"), mcp={"tools": tools, "progress_interval_ms": 50, "stateless": True})
    base = live(app)

    async def work(s: ClientSession) -> Any:
        updates: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            updates.append(progress)

        looped = await s.call_tool("hostile_tool", {"mode": "loop"}, progress_callback=on_progress)
        return updates, looped, await s.call_tool("unit_convert", {"value": 1, "from": "m", "to": "cm"})

    updates, looped, converted = session(base, work)
    assert updates and looped.is_error and "400 ms deadline" in looped.content[0].text
    assert converted.structured_content["value"] == 100.0
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    assert "mcp-session-id" not in httpx.post(base + "/mcp", json=hello, headers=accept, trust_env=False).headers
