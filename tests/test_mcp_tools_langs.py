"""MCP tools in every guest language, with the official `mcp` client SDK against a real
uvicorn: a Python tool (a routeiq:tool component built by componentize-py), a C tool, a
Rust tool that asks a loopback rates service through an operator cluster by HTTP callout
(proxy-wasm style: dispatch, pause, on_http_call_response), a callout the policy does
not grant, a call bounded by call_timeout_ms while its callout hangs, a Python tool that
loops, raises or hoards memory answered as a tool error in bounded time, and the audit
record and trace span of every call."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import wasmtime
import pytest
from mcp.client.session import ClientSession
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from routeiq.admin.auth import hash_key
from routeiq.app import create_app
from routeiq.config import parse_config
from routeiq.demo_services import create_demo_auth_service
from routeiq.mcp.tools import ToolStartupError
from test_mcp import session, tool

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "guest-examples"
TEXT_STATS = EXAMPLES / "python" / "build" / "text_stats.wasm"
PY_HOSTILE = EXAMPLES / "python" / "build" / "py_hostile_tool.wasm"
C_CHECKSUM = EXAMPLES / "c" / "build" / "c_checksum.wasm"
CURRENCY = EXAMPLES / "rust" / "build" / "currency_convert.wasm"
OPS_KEY = "riq_ops_key_for_tool_lang_tests"
CALLOUT_GRANT = {"unpinned": True, "capabilities": ["http_callout"], "callouts": [{"cluster": "rates", "methods": ["GET"]}]}


@pytest.fixture
def rates(live: Callable[[Any], str]) -> int:
    """The demo's rates service (routeiq demo-auth) on a real uvicorn: its port."""
    return int(live(create_demo_auth_service()).rsplit(":", 1)[1])


def start(make_app: Callable[..., Any], live: Callable[[Any], str], tools: list[dict[str, Any]], policy_tools: dict[str, Any], **top: Any) -> tuple[Any, str]:
    app = make_app([], policy={"tools": policy_tools}, mcp={"tools": tools}, **top)
    return app, live(app)


def test_each_language_lists_and_answers(make_app: Callable[..., Any], live: Callable[[Any], str], rates: int) -> None:
    tools = [tool("text_stats", TEXT_STATS), tool("c_checksum", C_CHECKSUM), tool("currency_convert", CURRENCY, config={"cluster": "rates", "path": "/rates"})]
    policy = {"text_stats": {"unpinned": True}, "c_checksum": {"unpinned": True}, "currency_convert": CALLOUT_GRANT}
    app, base = start(make_app, live, tools, policy, clusters=[{"name": "rates", "endpoints": [f"127.0.0.1:{rates}"]}])

    async def work(s: ClientSession) -> Any:
        listed = await s.list_tools()
        stats = await s.call_tool("text_stats", {"text": "The cat sat. The dog ran!\nThe end.", "top": 2})
        empty = await s.call_tool("text_stats", {"text": "   "})
        crc = await s.call_tool("c_checksum", {"text": "hello"})
        adler = await s.call_tool("c_checksum", {"text": "Wikipedia", "algorithm": "adler32"})
        fx = await s.call_tool("currency_convert", {"amount": 10, "from": "USD", "to": "EUR"})
        unknown_pair = await s.call_tool("currency_convert", {"amount": 1, "from": "USD", "to": "XYZ"})
        return listed, stats, empty, crc, adler, fx, unknown_pair

    listed, stats, empty, crc, adler, fx, unknown_pair = session(base, work)
    by_name = {t.name: t for t in listed.tools}
    assert set(by_name) == {"text_stats", "c_checksum", "currency_convert"}
    assert by_name["text_stats"].input_schema["required"] == ["text"] and "words" in (by_name["text_stats"].description or "")
    assert by_name["c_checksum"].output_schema["properties"]["checksum"]["pattern"] == "^[0-9a-f]{8}$"
    assert stats.structured_content == {
        "characters": 34, "words": 8, "lines": 2, "sentences": 3,
        "top_words": [{"word": "the", "count": 3}, {"word": "cat", "count": 1}],
    }  # fmt: skip
    assert empty.is_error and "text is empty" in empty.content[0].text
    assert crc.structured_content == {"algorithm": "crc32", "checksum": "3610a686", "bytes": 5}  # zlib.crc32(b"hello")
    assert adler.structured_content["checksum"] == "11e60398"  # the Adler-32 of "Wikipedia" (its Wikipedia article)
    assert not fx.is_error and fx.structured_content == {"amount": pytest.approx(9.25), "currency": "EUR", "rate": pytest.approx(0.925)}
    assert unknown_pair.is_error and "HTTP 404" in unknown_pair.content[0].text
    assert app.state.gateway.tool_set.tools["text_stats"].kind == "component"
    listing = httpx.get(base + "/mcp/tools", trust_env=False).json()
    assert sorted(t["name"] for t in listing["tools"]) == ["c_checksum", "currency_convert", "text_stats"]


def test_a_callout_the_policy_does_not_grant_is_refused_audited_and_answered(make_app: Callable[..., Any], live: Callable[[Any], str], rates: int) -> None:
    # The tool may call cluster `rates`; its config points it at `other`, which no rule names.
    clusters = [{"name": "rates", "endpoints": [f"127.0.0.1:{rates}"]}, {"name": "other", "endpoints": [f"127.0.0.1:{rates}"]}]
    tools = [tool("currency_convert", CURRENCY, config={"cluster": "other"})]
    app, base = start(make_app, live, tools, {"currency_convert": CALLOUT_GRANT}, clusters=clusters)

    result = session(base, lambda s: s.call_tool("currency_convert", {"amount": 1, "from": "EUR", "to": "USD"}))
    assert result.is_error and 'rates service "other" cannot be called: BadArgument' in result.content[0].text
    gateway = app.state.gateway
    (denial,) = gateway.services.audit.recent("currency_convert")
    assert (denial.call, denial.reason) == ("proxy_http_call", "not_allowed") and "cluster 'other'" in denial.detail
    assert gateway.services.callouts.started == 0  # refused in the host call, before any I/O
    metrics = httpx.get(base + "/metrics", trust_env=False).text
    assert 'routeiq_hostcall_denials_total{call="proxy_http_call",plugin="currency_convert",reason="not_allowed"} 1.0' in metrics


def test_a_tool_without_the_capability_cannot_load(make_app: Callable[..., Any]) -> None:
    # currency_convert's manifest asks for http_callout; a policy entry without it refuses it.
    with pytest.raises(ToolStartupError, match=r"mcp.tools\[0\] \(currency_convert\).*http_callout"):
        make_app([], policy={"tools": {"currency_convert": {"unpinned": True}}}, mcp={"tools": [tool("currency_convert", CURRENCY)]})


def test_call_timeout_bounds_a_call_whose_callout_hangs(make_app: Callable[..., Any], live: Callable[[Any], str]) -> None:
    release = threading.Event()

    async def slow(request: Request) -> JSONResponse:
        if request.query_params.get("from") == "SLO":
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 60)
        return JSONResponse({"rate": 2.0})

    port = int(live(Starlette(routes=[Route("/rates", slow)])).rsplit(":", 1)[1])
    clusters = [{"name": "rates", "endpoints": [f"127.0.0.1:{port}"], "timeout_s": 60}]
    app, base = start(make_app, live, [tool("currency_convert", CURRENCY, call_timeout_ms=1500)], {"currency_convert": CALLOUT_GRANT}, clusters=clusters)

    async def work(s: ClientSession) -> Any:
        began = time.monotonic()
        hung = await s.call_tool("currency_convert", {"amount": 1, "from": "SLO", "to": "USD"})
        elapsed = time.monotonic() - began
        after = await s.call_tool("currency_convert", {"amount": 3, "from": "EUR", "to": "USD"})
        return hung, elapsed, after

    try:
        hung, elapsed, after = session(base, work)
    finally:
        release.set()
    assert hung.is_error and "call_timeout_ms (1500 ms)" in hung.content[0].text
    assert elapsed < 30  # the call ends near 1.5 s, not at the cluster's 60 s
    assert not after.is_error and after.structured_content["amount"] == pytest.approx(6.0)
    kinds = [r.kind for r in app.state.gateway.services.audit.tool_calls("currency_convert")]
    assert kinds == ["call_timeout", "ok"]


def test_a_python_tool_that_loops_raises_or_hoards_is_an_error_in_bounded_time(make_app: Callable[..., Any], live: Callable[[Any], str]) -> None:
    tools = [tool("py_hostile_tool", PY_HOSTILE, limits={"timeout_ms": 1000, "memory_mb": 64}), tool("c_checksum", C_CHECKSUM)]
    app, base = start(make_app, live, tools, {"py_hostile_tool": {"unpinned": True}, "c_checksum": {"unpinned": True}})

    async def work(s: ClientSession) -> Any:
        began = time.monotonic()
        looped = await s.call_tool("py_hostile_tool", {"mode": "loop"})
        loop_s = time.monotonic() - began
        raised = await s.call_tool("py_hostile_tool", {"mode": "raise"})
        hoarded = await s.call_tool("py_hostile_tool", {"mode": "memory"})
        kv = await s.call_tool("py_hostile_tool", {"mode": "kv"})  # on a fresh VM
        other = await s.call_tool("c_checksum", {"text": ""})
        return looped, loop_s, raised, hoarded, kv, other

    looped, loop_s, raised, hoarded, kv, other = session(base, work)
    assert looped.is_error and ("deadline" in looped.content[0].text or "fuel" in looped.content[0].text)
    assert loop_s < 60  # the 1 s deadline (or fuel), with a fresh component VM built after it
    assert raised.is_error and "ValueError: py_hostile_tool was asked to raise" in raised.content[0].text
    assert hoarded.is_error and "memory" in hoarded.content[0].text
    assert not kv.is_error and kv.structured_content == {"status": "unimplemented"}
    (denial,) = app.state.gateway.services.audit.recent("py_hostile_tool")
    assert (denial.call, denial.reason) == ("set-shared-data", "capability")
    assert other.structured_content == {"algorithm": "crc32", "checksum": "00000000", "bytes": 0}
    assert app.state.gateway.tool_set.tools["py_hostile_tool"].stats.traps == 3
    assert httpx.get(base + "/health", trust_env=False).status_code == 200


def test_every_call_is_audited_without_its_arguments_and_traced(tmp_path: Path, module_cache_dir: Path, live: Callable[[Any], str]) -> None:
    audit_file = tmp_path / "audit.jsonl"
    exporter = InMemorySpanExporter()
    data = {
        "runtime": {"cache_dir": str(module_cache_dir)},
        "audit": {"path": str(audit_file)},
        "admin": {"keys": [{"name": "ops", "sha256": hash_key(OPS_KEY), "role": "operator"}]},
        "policy": {"tools": {"c_checksum": {"unpinned": True}}},
        "mcp": {"tools": [tool("c_checksum", C_CHECKSUM)]},
    }
    app = create_app(parse_config(data, "audit.yaml", tmp_path / "audit.yaml"), span_exporter=exporter)
    try:
        base = live(app)
        secret = "my card number is 4111 1111 1111 1111"
        session(base, lambda s: s.call_tool("c_checksum", {"text": secret}), key=OPS_KEY)
        session(base, lambda s: s.call_tool("c_checksum", {"text": "anonymous caller"}))
    finally:
        app.state.gateway.close()  # flushes the audit file
    lines = [json.loads(line) for line in audit_file.read_text().splitlines()]
    calls = [line for line in lines if line["event"] == "tool_call"]
    assert [(c["tool"], c["caller"], c["outcome"], c["kind"]) for c in calls] == [("c_checksum", "admin:ops", "ok", "ok"), ("c_checksum", "anonymous", "ok", "ok")]
    assert "4111" not in audit_file.read_text() and "anonymous caller" not in audit_file.read_text()
    spans = [s for s in exporter.get_finished_spans() if s.name == "tool c_checksum"]
    assert [dict(s.attributes)["routeiq.caller"] for s in spans] == ["admin:ops", "anonymous"]
    assert all(dict(s.attributes)["routeiq.outcome"] == "ok" and dict(s.attributes)["routeiq.tool.kind"] == "core" for s in spans)


def test_a_filter_component_is_refused_as_a_tool_naming_the_entry(make_app: Callable[..., Any]) -> None:
    filter_component = EXAMPLES / "python" / "build" / "py_tagger.wasm"  # a routeiq:filter component
    entry = {"name": "py_tagger", "wasm": str(filter_component), "allow": {"anyone": True}}
    with pytest.raises(ToolStartupError, match=r"mcp.tools\[0\] \(py_tagger\): component imports what a tool may not use: .*routeiq:filter/host@0.2.0"):
        make_app([], policy={"tools": {"py_tagger": {"unpinned": True}}}, mcp={"tools": [entry]})


def test_plugin_inspect_recognizes_tool_components_and_callout_tools() -> None:
    from routeiq.toolkit.inspect import format_inspection, inspect_module

    component = format_inspection(inspect_module(TEXT_STATS))
    assert "MCP tool:  exports routeiq:tool/tool; manifest declares input_schema, output_schema" in component
    assert "MCP tool" not in format_inspection(inspect_module(EXAMPLES / "python" / "build" / "py_tagger.wasm"))  # a filter
    core = format_inspection(inspect_module(CURRENCY))
    assert "env.routeiq_tool_finish" in core and "env.proxy_http_call                          http_callout" in core


def finish_tool(tmp_path: Path, name: str, finish: int | None, returns: int) -> Path:
    """A WAT tool that sets output "nope", optionally calls routeiq_tool_finish(finish),
    and returns `returns` (2: paused)."""
    finish_call = f"(drop (call $finish (i32.const {finish})))" if finish is not None else ""
    wat = f"""(module
  (import "env" "routeiq_tool_set_output" (func $out (param i32 i32) (result i32)))
  (import "env" "routeiq_tool_finish" (func $finish (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "nope")
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
  (func (export "routeiq_tool_call") (param i32 i32) (result i32)
    (drop (call $out (i32.const 16) (i32.const 4)))
    {finish_call}
    i32.const {returns}))"""
    wasm = tmp_path / f"{name}.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(wat))
    (tmp_path / f"{name}.manifest.json").write_text('{"input_schema": {"type": "object"}}')
    return wasm


def test_pausing_without_a_callout_and_finish_inside_the_call(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path) -> None:
    tools = [
        tool("idle", finish_tool(tmp_path, "idle", None, 2)),  # paused, but nothing in flight
        tool("finished", finish_tool(tmp_path, "finished", 1, 0)),  # finish(1) wins over returning 0
    ]
    app, base = start(make_app, live, tools, {"idle": {"unpinned": True}, "finished": {"unpinned": True}})

    async def work(s: ClientSession) -> Any:
        return await s.call_tool("idle", {}), await s.call_tool("finished", {})

    idle, finished = session(base, work)
    assert idle.is_error and "paused with no callout to wait for" in idle.content[0].text
    assert finished.is_error and finished.content[0].text == "nope"
