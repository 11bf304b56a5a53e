"""Filters built with the public Go proxy-wasm SDK (standard Go, GOOS=wasip1), unmodified,
through a real uvicorn: they link, start, and do what their source says."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from routeiq.app import PluginStartupError

GO_SDK = Path(__file__).resolve().parents[2] / "shared" / "data" / "proxy-wasm-sdk" / "go-sdk-44c7d58"

# The plugin configuration each example's OnPluginStart reads (from its source).
CONFIG: dict[str, str] = {
    "http_headers": '{"header": "x-wasm-header", "value": "demo-wasm"}',
    "http_routing": "1",  # the dice override (odd: no canary rewrite), so the test is deterministic
    "shared_queue_sender": "http",
    "shared_queue_receiver": "http_request_headers",
}


# Root-context-only plugins (an Envoy bootstrap `WasmService`): they create no HTTP
# context, so they are started and checked, but not put on the request path.
SERVICES = {"dispatch_call_on_tick", "shared_queue_receiver"}


def go_plugin(name: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "wasm": str(GO_SDK / f"{name}.wasm"), **extra}
    if name in CONFIG:
        entry["config"] = CONFIG[name]
    return entry


@pytest.mark.parametrize("name", sorted(p.stem for p in GO_SDK.glob("*.wasm")))
def test_every_go_sdk_module_links_starts_and_serves(make_app, live, name: str) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([go_plugin(name)]))
    with httpx.Client(base_url=base, timeout=30) as client:
        health = client.get("/health").json()
        assert [(p["name"], p["state"]) for p in health["plugins"]] == [(name, "ready")], health
        if name not in SERVICES:
            assert client.get("/echo", headers={"content-length": "0"}).status_code == 200


def test_go_http_headers_rewrites_request_and_response_headers(make_app, live) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([go_plugin("http_headers")]))
    response = httpx.get(base + "/echo", timeout=30)
    assert response.status_code == 200
    assert ["test", "best"] in response.json()["headers"]  # ReplaceHttpRequestHeader reached the upstream
    assert response.headers["x-proxy-wasm-go-sdk-example"] == "http_headers"
    assert response.headers["x-wasm-header"] == "demo-wasm"  # from the plugin configuration


@pytest.mark.parametrize(("operation", "body"), [("append", "hello[this is appended body]"), ("prepend", "[this is prepended body]hello"), ("replace", "[this is replaced body]")])
def test_go_http_body_rewrites_the_request_body(make_app, live, operation: str, body: str) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([go_plugin("http_body")]))
    response = httpx.post(base + "/echo", content=b"hello", headers={"buffer-operation": operation}, timeout=30)
    assert response.status_code == 200
    assert response.json()["body"] == body


def test_go_http_body_without_a_body_answers_its_local_reply(make_app, live) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([go_plugin("http_body")]))
    response = httpx.get(base + "/echo", timeout=30)  # no content-length: the filter answers 400 itself
    assert (response.status_code, response.text) == (400, "content must be provided")


def test_a_go_panic_reaches_the_log_readable(make_app, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    # Without its configuration the sender panics in OnPluginStart; the Go runtime prints
    # the panic in pieces through fd_write, then traps. The message must survive whole.
    entry = {"name": "sender", "wasm": str(GO_SDK / "shared_queue_sender.wasm")}
    with caplog.at_level(logging.ERROR, logger="routeiq.plugin.sender"), pytest.raises(PluginStartupError, match="trapped"):
        make_app([entry])
    lines = [r.getMessage() for r in caplog.records if r.name == "routeiq.plugin.sender"]
    assert "panic: failed to get plugin config: error status returned by host: not found" in lines
    assert any(line.startswith("main.(*senderPluginContext).OnPluginStart") for line in lines)


def test_go_http_routing_canary_rewrites_authority_as_envoy_accepts_it(make_app, live) -> None:  # type: ignore[no-untyped-def]
    # An even dice value appends "-canary" to :authority; Envoy accepts any authority
    # characters there (the port is not parsed), and so does RouteIQ: Host changes, the
    # destination does not.
    base = live(make_app([{**go_plugin("http_routing"), "config": "2"}]))
    response = httpx.get(base + "/echo", timeout=30)
    assert response.status_code == 200
    host = dict(response.json()["headers"])["host"]
    assert host == base.removeprefix("http://") + "-canary"


def _json_body(mib: float) -> bytes:
    """A JSON document of about `mib` MiB (an LLM request with a long context is this big)."""
    item = {"role": "user", "content": "lorem ipsum dolor sit amet " * 4}
    count = int(mib * 1024 * 1024 / (len(json.dumps(item)) + 2))
    return json.dumps({"model": "m", "messages": [item] * count}).encode()


def test_go_http_body_rewrites_a_multi_mb_json_body_with_the_default_limits(make_app, live) -> None:  # type: ignore[no-untyped-def]
    # Measured (docs/limits-and-failures.md "Choosing limits"): this filter needs about
    # 34 M fuel, 21 MiB of memory and ~120 ms for an 8 MiB body; the defaults hold that.
    base = live(make_app([go_plugin("http_body")]))
    body = _json_body(8)
    response = httpx.post(base + "/echo", content=body, headers={"buffer-operation": "append", "content-type": "application/json"}, timeout=60)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["body"] == body.decode() + "[this is appended body]"
    health = httpx.get(base + "/health", timeout=30).json()
    assert health["plugins"][0]["traps"] == 0


@pytest.mark.parametrize(
    ("limits", "kind", "setting"),
    [
        ({"memory_mb": 16}, "unreachable", "raise plugins[].limits.memory_mb"),  # Go's heap cannot grow: `fatal error: out of memory`
        ({"fuel": 5_000_000}, "fuel_exhausted", "raise plugins[].limits.fuel"),
        ({"fuel": 10**12, "timeout_ms": 5}, "deadline_exceeded", "raise plugins[].limits.timeout_ms"),
    ],
    ids=["memory", "fuel", "timeout"],
)
def test_a_go_filter_over_a_limit_is_told_which_setting_to_raise(make_app, live, caplog: pytest.LogCaptureFixture, limits: dict[str, int], kind: str, setting: str) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([go_plugin("http_body", limits=limits)]))
    with caplog.at_level(logging.WARNING, logger="routeiq.dispatch"):
        response = httpx.post(base + "/echo", content=_json_body(8), headers={"buffer-operation": "append"}, timeout=60)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == kind
    last_error = httpx.get(base + "/health", timeout=30).json()["plugins"][0]["last_error"]
    assert setting in last_error, last_error
    assert any(setting in r.getMessage() and "VM discarded" in r.getMessage() for r in caplog.records)
