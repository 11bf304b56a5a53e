"""MCP tools as sandboxed Wasm at /mcp, with the official `mcp` client SDK against a real
uvicorn: the example tool listed and called, schema violations, a hostile tool stopped in
bounded time while the gateway keeps serving, a denied capability, permissions by key and
admin role, and GET /mcp/tools."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
import httpx2
import pytest
import wasmtime
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from routeiq.admin.auth import hash_key
from routeiq.mcp.tools import ToolStartupError

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "guest-examples" / "rust" / "build"
UNIT = BUILD / "unit_convert.wasm"
HOSTILE = BUILD / "hostile_tool.wasm"
MASTER = "sk-master-mcp-test"
OPS_KEY, VIEWER_KEY = "riq_ops_key_for_mcp_tests", "riq_viewer_key_for_mcp_tests"
ADMIN = {"keys": [{"name": "ops", "sha256": hash_key(OPS_KEY), "role": "operator"}, {"name": "view", "sha256": hash_key(VIEWER_KEY), "role": "viewer"}]}


def tool(name: str, wasm: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "wasm": str(wasm), "allow": {"anyone": True}, **extra}


def policy_for(*names: str, **entries: Any) -> dict[str, Any]:
    tools = {n: {"unpinned": True} for n in names}
    tools.update(entries)
    return {"tools": tools}


def session(base: str, work: Callable[[ClientSession], Awaitable[Any]], key: str | None = None) -> Any:
    """Run `work` in an initialized MCP session over Streamable HTTP (the SDK's client)."""

    async def run() -> Any:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers, timeout=30, trust_env=False) as client:
            async with streamable_http_client(base + "/mcp", http_client=client) as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    return await work(s)

    return asyncio.run(run())


@pytest.fixture
def gateway(make_app: Callable[..., Any], live: Callable[[Any], str]) -> Callable[..., tuple[Any, str]]:
    def start(tools: list[dict[str, Any]], policy: Any = None, mcp_hosts: list[str] | None = None, **top: Any) -> tuple[Any, str]:
        if policy is None:
            policy = policy_for(*[t["name"] for t in tools])
        app = make_app([], policy=policy, mcp={"tools": tools, "allowed_hosts": mcp_hosts or []}, **top)
        return app, live(app)

    return start


def test_initialize_list_and_call_the_example_tool(gateway: Callable[..., tuple[Any, str]]) -> None:
    _, base = gateway([tool("unit_convert", UNIT)])

    async def work(s: ClientSession) -> Any:
        hello = await s.initialize()  # the session's (already done by `session`)
        listed = await s.list_tools()
        result = await s.call_tool("unit_convert", {"value": 10, "from": "km", "to": "mi"})
        grams = await s.call_tool("unit_convert", {"value": 2.5, "from": "lb", "to": "g"})
        return hello, listed, result, grams

    hello, listed, result, grams = session(base, work)
    assert hello.server_info.name == "routeiq" and hello.capabilities.tools is not None
    (only,) = listed.tools
    assert only.name == "unit_convert" and "length" in (only.description or "")
    assert only.input_schema["required"] == ["value", "from", "to"] and only.output_schema is not None
    assert not result.is_error
    assert result.structured_content == {"value": pytest.approx(6.213711922), "unit": "mi"}
    assert grams.structured_content["value"] == pytest.approx(1133.98092)
    listing = httpx.get(base + "/mcp/tools", trust_env=False).json()
    assert [t["name"] for t in listing["tools"]] == ["unit_convert"]
    assert listing["tools"][0]["inputSchema"]["properties"]["from"]["enum"][3] == "km"


def test_arguments_are_checked_against_the_input_schema_before_the_module_runs(gateway: Callable[..., tuple[Any, str]]) -> None:
    app, base = gateway([tool("unit_convert", UNIT)])

    async def work(s: ClientSession) -> Any:
        errors = []
        for arguments in ({"value": "ten", "from": "km", "to": "mi"}, {"value": 1, "from": "parsec", "to": "mi"}):
            with pytest.raises(MCPError) as raised:
                await s.call_tool("unit_convert", arguments)
            errors.append(raised.value)
        # A valid request the tool itself refuses is a tool error (isError), not a protocol one.
        mixed = await s.call_tool("unit_convert", {"value": 1, "from": "kg", "to": "mi"})
        return errors, mixed

    errors, mixed = session(base, work)
    assert errors[0].error.code == -32602 and "arguments.value: 'ten' is not of type 'number'" in errors[0].error.message
    assert "arguments.from: 'parsec' is not one of" in errors[1].error.message
    assert mixed.is_error and "cannot convert a mass (kg) to a length (mi)" in mixed.content[0].text
    stats = app.state.gateway.tool_set.tools["unit_convert"].stats
    assert (stats.refused, stats.calls, stats.errors) == (2, 1, 1)


def test_a_hostile_tool_is_stopped_in_bounded_time_and_the_gateway_keeps_serving(gateway: Callable[..., tuple[Any, str]]) -> None:
    app, base = gateway([tool("hostile_tool", HOSTILE, limits={"timeout_ms": 200}), tool("unit_convert", UNIT)])

    async def work(s: ClientSession) -> Any:
        began = time.monotonic()
        looped = await s.call_tool("hostile_tool", {"mode": "loop"})
        elapsed = time.monotonic() - began
        trapped = await s.call_tool("hostile_tool", {"mode": "trap"})
        after = await s.call_tool("hostile_tool", {"mode": "echo"})  # on a fresh VM
        other = await s.call_tool("unit_convert", {"value": 1, "from": "m", "to": "cm"})
        return looped, elapsed, trapped, after, other

    looped, elapsed, trapped, after, other = session(base, work)
    assert looped.is_error and ("deadline" in looped.content[0].text or "fuel" in looped.content[0].text)
    assert elapsed < 5
    assert trapped.is_error and "unreachable" in trapped.content[0].text
    assert not after.is_error and after.structured_content == {"status": 0}
    assert other.structured_content == {"value": pytest.approx(100.0), "unit": "cm"}
    assert app.state.gateway.tool_set.tools["hostile_tool"].stats.traps == 2
    assert httpx.get(base + "/health", trust_env=False).status_code == 200
    metrics = httpx.get(base + "/metrics", trust_env=False).text
    assert 'routeiq_mcp_tool_calls_total{outcome="trap",tool="hostile_tool"} 2.0' in metrics
    assert 'routeiq_mcp_tool_calls_total{outcome="ok",tool="hostile_tool"} 1.0' in metrics
    assert 'routeiq_mcp_tool_call_seconds_count{tool="hostile_tool"} 3.0' in metrics


def test_fuel_exhaustion_and_a_memory_bomb_are_tool_errors(gateway: Callable[..., tuple[Any, str]]) -> None:
    tools = [
        tool("hostile_tool", HOSTILE, limits={"fuel": 100_000, "timeout_ms": 10_000}, config={"greeting": "hi"}),
        tool("bomb", HOSTILE, limits={"memory_mb": 16, "timeout_ms": 5_000}),  # the same module under another name
    ]
    _, base = gateway(tools)

    async def work(s: ClientSession) -> Any:
        looped = await s.call_tool("hostile_tool", {"mode": "loop"})
        bomb = await s.call_tool("bomb", {"mode": "memory"})
        config = await s.call_tool("hostile_tool", {"mode": "config"})
        return looped, bomb, config

    looped, bomb, config = session(base, work)
    assert looped.is_error and "ran out of fuel" in looped.content[0].text
    assert bomb.is_error and "16 MiB memory limit" in bomb.content[0].text
    assert config.structured_content == {"config": {"greeting": "hi"}}  # the plugin configuration buffer


def test_a_capability_the_policy_does_not_grant_is_refused_and_audited(gateway: Callable[..., tuple[Any, str]]) -> None:
    app, base = gateway([tool("hostile_tool", HOSTILE)])
    answer = session(base, lambda s: s.call_tool("hostile_tool", {"mode": "kv"}))
    assert answer.structured_content == {"status": 12}  # UNIMPLEMENTED: shared_kv is not granted
    records = app.state.gateway.services.audit.recent("hostile_tool")
    assert any(r.plugin == "hostile_tool" and r.call == "proxy_set_shared_data" and r.reason == "capability" for r in records)


# A tool module without a manifest section (its sidecar manifest says what it needs).
BARE_TOOL = """(module (memory (export "memory") 1)
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
  (func (export "routeiq_tool_call") (param i32 i32) (result i32) i32.const 0))"""


def bare_tool(tmp_path: Path, manifest: str) -> Path:
    wasm = tmp_path / "bare.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(BARE_TOOL))
    (tmp_path / "bare.manifest.json").write_text(manifest)
    return wasm


def test_a_tool_whose_manifest_needs_more_than_its_grant_is_refused_at_startup(make_app: Callable[..., Any], tmp_path: Path) -> None:
    schema = '"input_schema": {"type": "object"}'
    greedy = bare_tool(tmp_path, '{"capabilities": ["shared_kv"], %s}' % schema)
    with pytest.raises(ToolStartupError, match=r"mcp.tools\[0\] \(bare\): tool 'bare' needs shared_kv .* the policy has no entry for it"):
        make_app([], policy=None, mcp={"tools": [tool("bare", greedy)]})
    granted = make_app([], policy=policy_for(bare={"unpinned": True, "capabilities": ["shared_kv"]}), mcp={"tools": [tool("bare", greedy)]})
    assert "bare" in granted.state.gateway.tool_set.tools
    ticking = bare_tool(tmp_path, '{"capabilities": ["timers"], %s}' % schema)
    with pytest.raises(ToolStartupError, match="asks for timers, which tools cannot use .a tool call cannot receive timer ticks"):
        make_app([], policy=policy_for(bare={"unpinned": True, "capabilities": ["timers"]}), mcp={"tools": [tool("bare", ticking)]})
    broken = bare_tool(tmp_path, '{"input_schema": {"type": "object", "properties": {"x": {"type": 5}}}}')
    with pytest.raises(ToolStartupError, match=r"not a valid JSON Schema: input_schema.properties.x.type"):
        make_app([], policy=policy_for("bare"), mcp={"tools": [tool("bare", broken)]})
    schemaless = bare_tool(tmp_path, "{}")
    with pytest.raises(ToolStartupError, match="needs an `input_schema` with type object"):
        make_app([], policy=policy_for("bare"), mcp={"tools": [tool("bare", schemaless)]})


def test_pins_of_config_and_policy(make_app: Callable[..., Any], tmp_path: Path) -> None:
    wasm = tmp_path / "unit.wasm"
    wasm.write_bytes(UNIT.read_bytes())
    with pytest.raises(ToolStartupError, match=r"mcp.tools\[0\] \(unit_convert\).*sha256 mismatch"):
        make_app([], policy=policy_for("unit_convert"), mcp={"tools": [tool("unit_convert", wasm, sha256="0" * 64)]})
    pinned = {"sha256": "f" * 64}
    with pytest.raises(ToolStartupError, match="does not match the policy's pin"):
        make_app([], policy=policy_for(unit_convert=pinned), mcp={"tools": [tool("unit_convert", UNIT)]})
    ok = make_app([], policy=policy_for(unit_convert={"sha256": hashlib.sha256(UNIT.read_bytes()).hexdigest()}), mcp={"tools": [tool("unit_convert", UNIT)]})
    assert "unit_convert" in ok.state.gateway.tool_set.tools


def test_permissions_by_admin_role_default_deny(gateway: Callable[..., tuple[Any, str]]) -> None:
    tools = [
        {"name": "unit_convert", "wasm": str(UNIT), "allow": {"admin_role": "operator"}},
        {"name": "hostile_tool", "wasm": str(HOSTILE)},  # no `allow`: nobody
    ]
    _, base = gateway(tools, admin=ADMIN)

    def names(key: str | None) -> list[str]:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return [t["name"] for t in httpx.get(base + "/mcp/tools", headers=headers, trust_env=False).json()["tools"]]

    assert names(None) == [] and names(VIEWER_KEY) == [] and names(OPS_KEY) == ["unit_convert"]
    assert httpx.get(base + "/mcp/tools", headers={"authorization": "Bearer nope"}, trust_env=False).status_code == 401
    done = session(base, lambda s: s.call_tool("unit_convert", {"value": 1, "from": "km", "to": "m"}), key=OPS_KEY)
    assert done.structured_content["value"] == pytest.approx(1000.0)

    async def denied(s: ClientSession) -> Any:
        listed = await s.list_tools()
        with pytest.raises(MCPError) as raised:
            await s.call_tool("unit_convert", {"value": 1, "from": "km", "to": "m"})
        return listed, raised.value

    listed, error = session(base, denied, key=VIEWER_KEY)
    assert listed.tools == [] and "unknown tool 'unit_convert'" in error.error.message


def test_permissions_by_virtual_key_and_team(gateway: Callable[..., tuple[Any, str]], tmp_path: Path) -> None:
    tools = [
        {"name": "unit_convert", "wasm": str(UNIT), "allow": {"keys": ["alice"], "teams": ["research"]}},
        {"name": "hostile_tool", "wasm": str(HOSTILE), "allow": {"admin_role": "admin"}},
    ]
    _, base = gateway(tools, keys={"enabled": True, "master_key": MASTER}, admin={"state_dir": str(tmp_path / "state")})
    master = {"authorization": f"Bearer {MASTER}"}

    def new_key(**body: Any) -> str:
        return str(httpx.post(base + "/key/generate", json=body, headers=master, trust_env=False).json()["key"])

    httpx.post(base + "/team/new", json={"team_id": "research"}, headers=master, trust_env=False)
    alice, bob, carol = new_key(key_alias="alice"), new_key(key_alias="bob"), new_key(key_alias="carol", team_id="research")
    assert httpx.get(base + "/mcp/tools", trust_env=False).status_code == 401  # keys on: /mcp needs a key

    def names(key: str) -> list[str]:
        return [t.name for t in session(base, lambda s: s.list_tools(), key=key).tools]

    assert names(alice) == ["unit_convert"] and names(carol) == ["unit_convert"] and names(bob) == []
    assert sorted(names(MASTER)) == ["hostile_tool", "unit_convert"]
    done = session(base, lambda s: s.call_tool("unit_convert", {"value": 3, "from": "ft", "to": "in"}), key=carol)
    assert done.structured_content["value"] == pytest.approx(36.0)


def test_sessions_are_stateful_and_a_revoked_caller_is_refused_inside_one(gateway: Callable[..., tuple[Any, str]]) -> None:
    _, base = gateway([tool("unit_convert", UNIT)])
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    opened = httpx.post(base + "/mcp", json=hello, headers=accept, trust_env=False)
    assert opened.status_code == 200
    session_id = opened.headers["mcp-session-id"]  # the SDK's stateful transport
    unknown = httpx.post(base + "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers={**accept, "mcp-session-id": "nope"}, trust_env=False)
    assert unknown.status_code == 404
    bad_key = httpx.post(base + "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers={**accept, "mcp-session-id": session_id, "authorization": "Bearer nope"}, trust_env=False)
    assert bad_key.status_code == 401  # every request of a session is authenticated again


def test_dns_rebinding_protection_when_hosts_are_named(gateway: Callable[..., tuple[Any, str]]) -> None:
    _, base = gateway([tool("unit_convert", UNIT)], mcp_hosts=["mcp.example.test"])
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    assert httpx.post(base + "/mcp", json=hello, headers=accept, trust_env=False).status_code == 421  # Host 127.0.0.1:port
    assert httpx.post(base + "/mcp", json=hello, headers={**accept, "host": "mcp.example.test"}, trust_env=False).status_code == 200


def test_policy_check_explains_tools(tmp_path: Path) -> None:
    from routeiq.config import parse_config
    from routeiq.toolkit.policy_check import explain

    data = {"mcp": {"tools": [tool("unit_convert", UNIT), tool("greedy", bare_tool(tmp_path, '{"capabilities": ["shared_kv"], "input_schema": {"type": "object"}}'))]}, "policy": policy_for("unit_convert")}
    report, ok = explain(parse_config(data, "t.yaml", tmp_path / "t.yaml"))
    assert not ok
    assert f"tool unit_convert ({UNIT})" in report and "pinned by:     unpinned" in report
    assert "tool greedy" in report and "REFUSED: tool 'greedy' needs shared_kv" in report


def test_legacy_sse_transport_with_the_same_permissions(gateway: Callable[..., tuple[Any, str]]) -> None:
    from mcp.client.sse import sse_client

    tools = [tool("unit_convert", UNIT), {"name": "hostile_tool", "wasm": str(HOSTILE), "allow": {"admin_role": "operator"}}]
    _, base = gateway(tools, admin=ADMIN)

    async def run(key: str | None) -> Any:
        headers = {"authorization": f"Bearer {key}"} if key else None
        async with sse_client(base + "/mcp/sse", headers=headers) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                listed = await s.list_tools()
                done = await s.call_tool("unit_convert", {"value": 1, "from": "mi", "to": "km"})
                return sorted(t.name for t in listed.tools), done

    names, done = asyncio.run(run(None))
    assert names == ["unit_convert"] and done.structured_content["value"] == pytest.approx(1.609344)
    names, _ = asyncio.run(run(OPS_KEY))
    assert names == ["hostile_tool", "unit_convert"]


def wat_tool(tmp_path: Path, name: str, output: str, status: int = 0, allocator: int = 1024) -> Path:
    """A tool in WAT that answers `output` with `status`; its manifest in a sidecar."""
    escaped = output.replace("\\", "\\\\").replace('"', '\\"')
    wat = f"""(module
  (import "env" "routeiq_tool_set_output" (func $out (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{escaped}")
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const {allocator})
  (func (export "routeiq_tool_call") (param i32 i32) (result i32)
    (drop (call $out (i32.const 16) (i32.const {len(output.encode())})))
    i32.const {status}))"""
    wasm = tmp_path / f"{name}.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(wat))
    manifest = '{"input_schema": {"type": "object"}, "output_schema": {"type": "object", "properties": {"value": {"type": "number"}}}}'
    (tmp_path / f"{name}.manifest.json").write_text(manifest)
    return wasm


def test_bad_outputs_and_a_lying_allocator_are_tool_errors(gateway: Callable[..., tuple[Any, str]], tmp_path: Path) -> None:
    tools = [
        tool("not_json", wat_tool(tmp_path, "not_json", "{oops")),
        tool("off_schema", wat_tool(tmp_path, "off_schema", '{"value": "ten"}')),
        tool("silent_error", wat_tool(tmp_path, "silent_error", "", status=7)),
        tool("liar", wat_tool(tmp_path, "liar", "{}", allocator=-16)),
        tool("fine", wat_tool(tmp_path, "fine", '{"value": 1.5}')),
    ]
    app, base = gateway(tools)

    async def work(s: ClientSession) -> dict[str, Any]:
        return {t["name"]: await s.call_tool(t["name"], {}) for t in tools}

    answers = session(base, work)
    assert "answered output that is not JSON" in answers["not_json"].content[0].text
    assert "output.value: 'ten' is not of type 'number'" in answers["off_schema"].content[0].text
    assert answers["silent_error"].content[0].text == "the tool answered status 7"
    assert "outside linear memory" in answers["liar"].content[0].text
    assert all(answers[n].is_error for n in ("not_json", "off_schema", "silent_error", "liar"))
    assert not answers["fine"].is_error and answers["fine"].structured_content == {"value": 1.5}
    assert app.state.gateway.tool_set.tools["liar"].stats.traps == 1


def test_plugin_inspect_recognizes_a_tool() -> None:
    from routeiq.toolkit.inspect import format_inspection, inspect_module

    text = format_inspection(inspect_module(UNIT))
    assert "MCP tool:  exports routeiq_tool_call; manifest declares input_schema, output_schema" in text
    assert "env.routeiq_tool_set_output" in text and "MCP tools only" in text


def test_check_config_refuses_a_broken_tool_like_serve(tmp_path: Path) -> None:
    import subprocess
    import sys

    import json

    config = tmp_path / "gateway.yaml"  # JSON is YAML
    data = {"mcp": {"tools": [{"name": "unit_convert", "wasm": str(UNIT), "sha256": "0" * 64}]}, "policy": policy_for("unit_convert")}
    config.write_text(json.dumps(data))
    checked = subprocess.run([sys.executable, "-m", "routeiq", "check-config", str(config)], capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 2 and "mcp.tools[0] (unit_convert): tool 'unit_convert': sha256 mismatch" in checked.stderr
    del data["mcp"]["tools"][0]["sha256"]
    config.write_text(json.dumps(data))
    ok = subprocess.run([sys.executable, "-m", "routeiq", "check-config", str(config)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{config}: ok (0 plugins, 1 MCP tools)"
