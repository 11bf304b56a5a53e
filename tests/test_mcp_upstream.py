"""Upstream MCP servers fronted by the gateway, with the official SDK on both sides and
real processes: a small MCPServer (tests/mcp_upstream_server.py) on loopback is listed
under its prefix and called through /mcp with the configured upstream credential (never
the caller's); arguments are checked against its schema first; its progress reaches the
client. Killed, its tools answer clear errors, its breaker opens and /health says
degraded while /mcp keeps serving; restarted on the same port, it recovers. A server that
is down at startup has no tools listed and does not hold up the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from support import free_port
from test_mcp import UNIT, policy_for, session, tool

HERE = Path(__file__).resolve().parent
TOKEN = "upstream-secret-token"


@contextlib.contextmanager
def upstream(port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, str(HERE / "mcp_upstream_server.py"), str(port), TOKEN])
    try:
        deadline = time.monotonic() + 60
        while True:  # up when it answers (401 without the token)
            try:
                if httpx.get(f"http://127.0.0.1:{port}/mcp", trust_env=False, timeout=2).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the upstream MCP server did not start"
            time.sleep(0.1)
        yield proc
    finally:
        proc.kill()
        proc.wait(30)


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def listed(base: str) -> list[str]:
    return [t["name"] for t in httpx.get(base + "/mcp/tools", trust_env=False).json()["tools"]]


def server_entry(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": f"http://127.0.0.1:{port}/mcp", "headers": {"authorization": f"Bearer {TOKEN}"}, "retry_s": 0.2, "timeout_s": 20, "allow": {"anyone": True}, **extra}


def test_an_upstream_server_is_fronted_breaks_and_recovers(make_app: Callable[..., Any], live: Callable[[Any], str]) -> None:
    port = free_port()
    config = {
        "tools": [tool("unit_convert", UNIT)],
        "servers": [server_entry("calc", port, tools=["add", "seen_headers", "count"])],
    }
    app = make_app([], policy=policy_for("unit_convert"), mcp=config, router={"breaker": {"consecutive_failures": 2, "cooldown_s": 0.5}})
    base = live(app)
    with upstream(port) as proc:
        wait_until(lambda: "calc_add" in listed(base), "the upstream's tools to be listed")
        assert sorted(listed(base)) == ["calc_add", "calc_count", "calc_seen_headers", "unit_convert"]

        async def work(s: ClientSession) -> Any:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            added = await s.call_tool("calc_add", {"a": 2, "b": 3})
            seen = await s.call_tool("calc_seen_headers", {})
            updates: list[tuple[float, float | None, str | None]] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                updates.append((progress, total, message))

            counted = await s.call_tool("calc_count", {"steps": 3}, progress_callback=on_progress)
            with pytest.raises(MCPError) as refused:
                await s.call_tool("calc_add", {"a": "two", "b": 3})
            return tools, added, seen, updates, counted, refused.value

        tools, added, seen, updates, counted, refused = session(base, work)
        assert tools["calc_add"].input_schema["properties"]["a"]["type"] == "integer" and "Add two integers" in (tools["calc_add"].description or "")
        assert not added.is_error and added.structured_content == {"result": 5}
        assert seen.structured_content == {"authorization": f"Bearer {TOKEN}", "x-api-key": ""}
        assert [u[0] for u in updates] == [1, 2, 3] and updates[-1][2] == "step 3"
        assert counted.content[0].text == "counted to 3"
        assert refused.error.code == -32602 and "arguments.a: 'two' is not of type 'integer'" in refused.error.message
        health = httpx.get(base + "/health", trust_env=False).json()
        assert health["status"] == "ok" and health["mcp_servers"]["calc"]["connected"]
        proc.kill()
        proc.wait(30)

        async def while_down(s: ClientSession) -> Any:
            answers = []
            for _ in range(20):  # failures open the breaker; then calls are refused at once
                answers.append(await s.call_tool("calc_add", {"a": 1, "b": 1}))
                if "circuit breaker (mcp:calc) is open" in answers[-1].content[0].text:
                    break
            return answers, await s.list_tools(), await s.call_tool("unit_convert", {"value": 1, "from": "km", "to": "m"})

        answers, still_listed, local = session(base, while_down)
        assert all(a.is_error for a in answers)
        assert "upstream MCP server 'calc'" in answers[0].content[0].text
        assert "circuit breaker (mcp:calc) is open" in answers[-1].content[0].text
        assert "calc_add" in [t.name for t in still_listed.tools]  # the last list stays: calls answer errors
        assert local.structured_content["value"] == 1000.0  # the gateway's own tools are not affected
        health = httpx.get(base + "/health", trust_env=False).json()
        assert health["status"] == "degraded" and not health["mcp_servers"]["calc"]["connected"]
        assert health["mcp_servers"]["calc"]["error"]
        metrics = httpx.get(base + "/metrics", trust_env=False).text
        assert 'routeiq_mcp_tool_calls_total{outcome="ok",tool="calc_add"} 1.0' in metrics
        assert 'routeiq_mcp_tool_arguments_refused_total{tool="calc_add"} 1.0' in metrics
        assert f'routeiq_mcp_tool_calls_total{{outcome="unavailable",tool="calc_add"}} {float(len(answers))}' in metrics

    with upstream(port):  # restarted on the same port: the breaker's probe reconnects

        def recovered() -> bool:
            answer = session(base, lambda s: s.call_tool("calc_add", {"a": 20, "b": 22}))
            return not answer.is_error and answer.structured_content == {"result": 42}

        wait_until(recovered, "the restarted upstream to answer through the gateway")
        health = wait_until(lambda: (h := httpx.get(base + "/health", trust_env=False).json())["status"] == "ok" and h, "/health to be ok again")
        assert health["mcp_servers"]["calc"]["connected"] and health["breakers"]["mcp:calc"]["state"] == "closed"
        assert health["breakers"]["mcp:calc"]["transitions"].get("closed->open", 0) >= 1


def test_a_cancelled_call_is_cancelled_upstream(make_app: Callable[..., Any], live: Callable[[Any], str]) -> None:
    port = free_port()
    app = make_app([], policy=None, mcp={"servers": [server_entry("calc", port, tools=["wait", "cancellations"])]})
    base = live(app)
    with upstream(port):
        wait_until(lambda: "calc_wait" in listed(base), "the upstream's tools to be listed")

        async def work(s: ClientSession) -> Any:
            seen = asyncio.Event()

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                seen.set()

            call = asyncio.ensure_future(s.call_tool("calc_wait", {}, progress_callback=on_progress))
            await asyncio.wait_for(seen.wait(), 60)  # upstream progress relayed: the call runs there
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            deadline = time.monotonic() + 60
            while True:  # the gateway's cancel reaches the upstream's handler
                counted = await s.call_tool("calc_cancellations", {})
                if counted.structured_content == {"result": 1} or time.monotonic() > deadline:
                    return counted
                await asyncio.sleep(0.1)

        counted = session(base, work)
        assert counted.structured_content == {"result": 1}
        assert app.state.gateway.mcp_upstreams.servers[0].breaker.state == "closed"  # a cancel is no failure of the server


def test_a_server_down_at_startup_lists_nothing_and_does_not_hold_up_the_gateway(make_app: Callable[..., Any], live: Callable[[Any], str]) -> None:
    port = free_port()  # nothing listens there
    app = make_app([], policy=policy_for("unit_convert"), mcp={"tools": [tool("unit_convert", UNIT)], "servers": [server_entry("ghost", port)]})
    base = live(app)
    assert listed(base) == ["unit_convert"]
    done = session(base, lambda s: s.call_tool("unit_convert", {"value": 2, "from": "km", "to": "m"}))
    assert done.structured_content["value"] == 2000.0
    health = wait_until(lambda: (h := httpx.get(base + "/health", trust_env=False).json())["mcp_servers"]["ghost"]["error"] != "not connected yet" and h, "a connection attempt")
    assert health["status"] == "degraded" and "ConnectError" in health["mcp_servers"]["ghost"]["error"]
    assert health["mcp_servers"]["ghost"]["connected"] is False and health["mcp_servers"]["ghost"]["tools"] == []


def test_upstream_server_config_errors_name_the_field(tmp_path: Path) -> None:
    from routeiq.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"gw.yaml: mcp.servers\[0\].url: String should match pattern"):
        parse_config({"mcp": {"servers": [{"name": "x", "url": "ftp://nope"}]}}, "gw.yaml", tmp_path / "gw.yaml")
    with pytest.raises(ConfigError, match="duplicate server prefixes: p"):
        parse_config({"mcp": {"servers": [{"name": "a", "prefix": "p", "url": "http://a/mcp"}, {"name": "b", "prefix": "p", "url": "http://b/mcp"}]}}, "gw.yaml", tmp_path / "gw.yaml")
    # A header read from the environment: an unset variable refuses the config, naming the field.
    config = tmp_path / "gw.yaml"
    config.write_text(json.dumps({"mcp": {"servers": [{"name": "x", "url": "http://a/mcp", "headers": {"authorization": "os.environ/RIQ_TEST_UPSTREAM_AUTH"}}]}}))
    env = {k: v for k, v in os.environ.items() if k != "RIQ_TEST_UPSTREAM_AUTH"}
    unset = subprocess.run([sys.executable, "-m", "routeiq", "check-config", str(config)], capture_output=True, text=True, env=env)
    assert unset.returncode == 2 and "mcp.servers[0].headers: authorization: os.environ/RIQ_TEST_UPSTREAM_AUTH is not set in the environment" in unset.stderr
    given = subprocess.run([sys.executable, "-m", "routeiq", "check-config", str(config)], capture_output=True, text=True, env={**env, "RIQ_TEST_UPSTREAM_AUTH": "Bearer t"})
    assert given.returncode == 0, given.stderr
