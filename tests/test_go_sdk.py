"""Filters built with the public Go proxy-wasm SDK (standard Go, GOOS=wasip1), unmodified,
through a real uvicorn: they link, start, and do what their source says."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from routeiq.app import PluginStartupError
from callout_service import ClusterEndpoint
from support import eventually, grant_everything

GO_SDK = Path(__file__).resolve().parents[2] / "shared" / "data" / "proxy-wasm-sdk" / "go-sdk-44c7d58"

# The plugin configuration each example's OnPluginStart reads (from its source).
CONFIG: dict[str, str] = {
    "http_headers": '{"header": "x-wasm-header", "value": "demo-wasm"}',
    "http_routing": "1",  # the dice override (odd: no canary rewrite), so the test is deterministic
    "shared_queue_sender": "http",
    "shared_queue_receiver": "http_request_headers",
}


# Root-context-only modules (an Envoy bootstrap `WasmService`): they create no HTTP
# context, so they run as `services:`, never on the request path.
SERVICES = {"dispatch_call_on_tick", "shared_queue_receiver"}


def go_plugin(name: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "wasm": str(GO_SDK / f"{name}.wasm"), **extra}
    if name in CONFIG:
        entry["config"] = CONFIG[name]
    return entry


def logs(app: Any, name: str) -> list[str]:
    return app.state.gateway.logs.messages(name)


@pytest.mark.parametrize("name", sorted(p.stem for p in GO_SDK.glob("*.wasm")))
def test_every_go_sdk_module_links_starts_and_serves(make_app, live, name: str) -> None:  # type: ignore[no-untyped-def]
    if name in SERVICES:
        app = make_app([], services=[go_plugin(name)], policy=grant_everything([name]))
    else:
        app = make_app([go_plugin(name)])
    base = live(app)
    with httpx.Client(base_url=base, timeout=30) as client:
        health = client.get("/health").json()
        kind = "service" if name in SERVICES else "filter"
        assert [(p["name"], p["kind"], p["state"]) for p in health["plugins"]] == [(name, kind, "ready")], health
        assert client.get("/echo", headers={"content-length": "0"}).status_code == 200
        assert f'routeiq_plugin_ready{{plugin="{name}"}} 1.0' in client.get("/metrics").text
    assert not any("invalid context id" in line for line in logs(app, name))


def test_go_shared_queue_sender_reaches_the_receiver_service(make_app, live) -> None:  # type: ignore[no-untyped-def]
    # As the example's envoy.yaml: one receiver VM (vm_id "receiver") with two plugin
    # configurations, each registering the queue its config names; the sender filter
    # resolves both as ("receiver", name) and enqueues every request and response header.
    services = [
        go_plugin("shared_queue_receiver", vm_id="receiver"),
        {**go_plugin("shared_queue_receiver", vm_id="receiver"), "name": "receiver_responses", "config": "http_response_headers"},
    ]
    policy = grant_everything(["shared_queue_receiver", "receiver_responses"])
    policy["plugins"]["sender"] = {**grant_everything(["sender"])["plugins"]["sender"], "kv": {"write": ["receiver"]}}
    app = make_app([{**go_plugin("shared_queue_sender", vm_id="sender"), "name": "sender"}], services=services, policy=policy)
    base = live(app)
    response = httpx.get(base + "/echo", headers={"x-queued": "hello"}, timeout=30)
    assert response.status_code == 200
    wanted = '{"key": "x-queued","value": "hello"}'
    assert f"enqueued data: {wanted}" in logs(app, "sender")
    assert eventually(lambda: any(line.endswith(wanted) for line in logs(app, "shared_queue_receiver")), timeout=10)
    received = [line for line in logs(app, "shared_queue_receiver") if "dequeued data from" in line]
    assert all(" dequeued data from http_request_headers(queueID=" in line for line in received), received
    assert any(line.endswith('{"key": ":method","value": "GET"}') for line in received)
    assert eventually(lambda: any("dequeued data from http_response_headers(queueID=" in line for line in logs(app, "receiver_responses")), timeout=10)


def test_go_shared_queue_sender_without_the_policy_grant_is_refused(make_app, live) -> None:  # type: ignore[no-untyped-def]
    # The receiver's VM is another namespace: resolving it needs the policy's kv grant.
    services = [go_plugin("shared_queue_receiver", vm_id="receiver")]
    app = make_app([{**go_plugin("shared_queue_sender"), "name": "sender"}], services=services, policy=grant_everything(["sender", "shared_queue_receiver"]))
    base = live(app)
    assert httpx.get(base + "/echo", timeout=30).status_code == 200
    assert any("error resolving queue id" in line for line in logs(app, "sender"))
    time.sleep(0.2)
    assert not any("dequeued data" in line for line in logs(app, "shared_queue_receiver"))


def test_go_dispatch_call_on_tick_calls_its_cluster(make_app, live) -> None:  # type: ignore[no-untyped-def]
    # As the example's envoy.yaml: cluster web_service is a static reply on loopback
    # (/ok: 200 "example body", /fail: 503). The module runs unmodified as a service; its
    # OnTick dispatches GET /ok or /fail (at random) with :authority some_authority to
    # cluster web_service every 100 ms, and its callback logs the response headers.
    endpoint = ClusterEndpoint("web_service")
    port = int(live(endpoint.app).rsplit(":", 1)[1])
    policy = grant_everything(["dispatch_call_on_tick"], callouts=[{"cluster": "web_service", "methods": ["GET"]}])
    app = make_app(
        [], services=[go_plugin("dispatch_call_on_tick")], policy=policy, clusters=[{"name": "web_service", "endpoints": [f"127.0.0.1:{port}"], "connect_timeout_s": 0.25}]
    )
    base = live(app)
    assert "set tick period milliseconds: 100" in logs(app, "dispatch_call_on_tick")
    # The path is the module's coin toss: wait until both have been asked for.
    assert eventually(lambda: {path for _, _, path in endpoint.received} == {"/ok", "/fail"}, timeout=60), endpoint.received
    assert {(method, host) for method, host, _ in endpoint.received} == {("GET", "some_authority")}
    lines = logs(app, "dispatch_call_on_tick")
    assert eventually(lambda: {"response header for the dispatched call: :status: 200", "response header for the dispatched call: :status: 503"} <= set(logs(app, "dispatch_call_on_tick")), timeout=30), lines
    assert "response header for the dispatched call: content-length: 13" in logs(app, "dispatch_call_on_tick")  # "example body\n"
    assert any(line.startswith("called 1 for contextID=") for line in logs(app, "dispatch_call_on_tick"))
    assert not any("dispatch httpcall failed" in line for line in logs(app, "dispatch_call_on_tick"))
    assert app.state.gateway.services.audit.recent("dispatch_call_on_tick") == []
    assert httpx.get(base + "/echo", timeout=30).status_code == 200  # requests pass by it
    plugin = app.state.gateway.plugin_set.plugin("dispatch_call_on_tick")
    assert plugin not in app.state.gateway.plugins  # the filter chain never receives it
    assert plugin.stats.traps == 0


def test_go_dispatch_call_on_tick_without_the_cluster_is_refused(make_app, live) -> None:  # type: ignore[no-untyped-def]
    # No cluster web_service: as Envoy's unknown cluster, the call answers BAD_ARGUMENT.
    app = make_app([], services=[go_plugin("dispatch_call_on_tick")], policy=grant_everything(["dispatch_call_on_tick"]))
    live(app)
    assert eventually(lambda: any(line.startswith("dispatch httpcall failed") and line.endswith("bad argument") for line in logs(app, "dispatch_call_on_tick")), timeout=30), logs(app, "dispatch_call_on_tick")
    assert app.state.gateway.plugin_set.plugin("dispatch_call_on_tick").stats.traps == 0


def test_go_shared_data_counts_requests(make_app, live) -> None:  # type: ignore[no-untyped-def]
    app = make_app([go_plugin("shared_data")])
    base = live(app)
    for _ in range(3):
        assert httpx.get(base + "/echo", timeout=30).status_code == 200
    assert [line for line in logs(app, "shared_data") if line.startswith("shared value")] == ["shared value: 1", "shared value: 2", "shared value: 3"]


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
        # The deadline's message is checked with a guest that never ends (test_sandbox.py):
        # how long this filter takes depends on the machine, so a deadline here would flake.
    ],
    ids=["memory", "fuel"],
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


def test_go_helloworld_logs_at_start_and_on_its_tick(make_app, live) -> None:  # type: ignore[no-untyped-def]
    app = make_app([go_plugin("helloworld")])
    live(app)
    assert "OnPluginStart from Go!" in logs(app, "helloworld")
    assert eventually(lambda: "OnTick called" in logs(app, "helloworld"), timeout=15)
    assert any(line.startswith("It's ") and ": random value: " in line for line in logs(app, "helloworld"))


def test_go_postpone_requests_holds_each_request_until_its_tick(make_app, live) -> None:  # type: ignore[no-untyped-def]
    # OnHttpRequestHeaders pauses every request and remembers its context; OnTick sets
    # that context effective and resumes it (proxy_set_effective_context from the root).
    app = make_app([go_plugin("postpone_requests")])
    base = live(app)
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(2):
            assert client.get("/echo").json()["path"] == "/echo"
    lines = logs(app, "postpone_requests")
    postponed = [line.rsplit("=", 1)[1] for line in lines if line.startswith("postpone request with contextID=")]
    resumed = [line.rsplit("=", 1)[1] for line in lines if line.startswith("resume request with contextID=")]
    assert len(postponed) == 2 and resumed == postponed  # each resumed, in order, by the tick
