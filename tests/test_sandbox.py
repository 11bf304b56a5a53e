"""Misbehaving guests never take the gateway down: bounded time, the right status, the
VM replaced, the next clean request served, memory not growing.

The hostile guests misbehave only on requests carrying `x-hostile`, so a clean request
through the very same plugin shows the gateway recovered.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from routeiq.config import parse_config
from routeiq.app import PluginStartupError, create_app
from support import eventually, plugin

HOSTILE = {"x-hostile": "1"}
PHRASES = {
    # each names the limit and the setting that raises it
    "fuel_exhausted": "ran out of fuel (5000000 units, limits.fuel) in proxy_on_request_headers; raise plugins[].limits.fuel",
    "deadline_exceeded": "ms deadline (limits.timeout_ms) in proxy_on_request_headers; raise plugins[].limits.timeout_ms",
    "memory_limit": "MiB memory limit (limits.memory_mb) in proxy_on_request_headers; raise plugins[].limits.memory_mb",
    "stack_overflow": "overflowed its stack in proxy_on_request_headers; raise runtime.max_wasm_stack_kb",
}

CASES = [
    # guest, limits, expected error kind
    ("hostile_loop", {"fuel": 5_000_000, "timeout_ms": 10_000}, "fuel_exhausted"),
    ("hostile_loop", {"fuel": 10**15, "timeout_ms": 50}, "deadline_exceeded"),
    ("hostile_memory", {"memory_mb": 8}, "memory_limit"),
    ("hostile_recursion", {}, "stack_overflow"),
]


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail_closed", "fail_open"])
@pytest.mark.parametrize("guest, limits, kind", CASES, ids=[f"{g}-{k}" for g, _, k in CASES])
def test_hostile_guest(make_app, guests: dict[str, Path], guest: str, limits: dict[str, int], kind: str, fail_open: bool) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("tagger", guests["tagger"]), plugin("bad", guests[guest], fail_open=fail_open, limits=limits)])
    bad = app.state.gateway.plugin("bad")
    with TestClient(app) as client:
        began = time.monotonic()
        response = client.get("/echo/x", headers=HOSTILE)
        assert time.monotonic() - began < 5
        if fail_open:
            assert response.status_code == 200
            assert ["x-routeiq-tagged", "routeiq"] in response.json()["headers"]  # the healthy plugin still ran
        else:
            assert response.status_code == 503
            error = response.json()["error"]
            assert (error["type"], error["code"], error["plugin"]) == ("plugin_error", kind, "bad")
            assert response.headers["x-routeiq-plugin-error"] == "bad"
        assert bad.stats.traps_by_kind == {kind: 1}

        clean = client.get("/echo/x")
        assert clean.status_code == 200
        assert bad.describe()["vm_generation"] == 2  # a fresh VM served the clean request
        health = client.get("/health").json()
        assert {p["name"]: p["state"] for p in health["plugins"]} == {"tagger": "ready", "bad": "ready"}
        assert health["plugins"][1]["traps_by_kind"] == {kind: 1}
        assert PHRASES[kind] in health["plugins"][1]["last_error"]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_bombs_do_not_grow_the_gateway(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("bomb", guests["hostile_memory"], limits={"memory_mb": 16}, quarantine={"max_traps": 1000})])
    with TestClient(app) as client:
        for _ in range(5):
            assert client.get("/echo", headers=HOSTILE).status_code == 503
        before = rss_kib()
        for _ in range(30):
            assert client.get("/echo", headers=HOSTILE).status_code == 503
        after = rss_kib()
        assert client.get("/echo").status_code == 200
    # 30 more discarded VMs of 16 MiB each would be ~480 MiB if they leaked.
    assert after - before < 64 * 1024, f"RSS grew by {(after - before) // 1024} MiB"
    assert app.state.gateway.plugin("bomb").stats.traps_by_kind == {"memory_limit": 35}


@pytest.mark.parametrize("callback", ["vm_start", "configure"])
def test_trap_while_starting_refuses_the_plugin(tmp_path: Path, guests: dict[str, Path], module_cache_dir: Path, callback: str) -> None:
    key = "vm_config" if callback == "vm_start" else "config"
    config = parse_config(
        {"plugins": [plugin("trappy", guests["hostile_trap"], **{key: callback})], "runtime": {"cache_dir": str(module_cache_dir)}},
        "c.yaml",
        tmp_path / "c.yaml",
    )
    with pytest.raises(PluginStartupError) as info:
        create_app(config)
    assert "trappy" in str(info.value) and f"proxy_on_{callback}" in str(info.value)


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail_closed", "fail_open"])
@pytest.mark.parametrize("callback", ["context_create", "request_headers", "request_body", "response_headers"])
def test_trap_before_the_response_starts(make_app, guests: dict[str, Path], callback: str, fail_open: bool) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("trappy", guests["hostile_trap"], config=callback, fail_open=fail_open)])
    trappy = app.state.gateway.plugin("trappy")
    with TestClient(app) as client:
        response = client.post("/echo", content=b'{"hello": 1}', headers=HOSTILE)
        if fail_open:
            assert response.status_code == 200
            assert response.json()["body"] == '{"hello": 1}'
        else:
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "unreachable"
        assert trappy.stats.traps_by_kind == {"unreachable": 1}
        assert f"proxy_on_{callback}" in trappy.stats.last_error
        assert client.post("/echo", content=b"{}").status_code == 200


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail_closed", "fail_open"])
def test_trap_while_streaming_the_response_body(make_app, live, guests: dict[str, Path], fail_open: bool) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("trappy", guests["hostile_trap"], config="response_body", fail_open=fail_open)])
    url = live(app)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        if fail_open:
            response = client.post("/v1/chat/completions", json=body, headers=HOSTILE)
            assert response.status_code == 200
            assert response.text.endswith("data: [DONE]\n\n")  # chunks pass through unmodified
        else:
            # Headers were already sent: the only honest signal left is a broken stream.
            with pytest.raises(httpx.RemoteProtocolError):
                client.post("/v1/chat/completions", json=body, headers=HOSTILE)
        assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert app.state.gateway.plugin("trappy").stats.traps_by_kind == {"unreachable": 1}


@pytest.mark.parametrize("callback", ["done", "log", "delete"])
def test_trap_after_the_response_is_contained(make_app, guests: dict[str, Path], callback: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("trappy", guests["hostile_trap"], config=callback)])
    trappy = app.state.gateway.plugin("trappy")
    with TestClient(app) as client:
        assert client.get("/echo", headers=HOSTILE).status_code == 200  # the response was already complete
        assert eventually(lambda: trappy.stats.traps_by_kind == {"unreachable": 1})
        assert client.get("/echo").status_code == 200
        assert trappy.describe()["vm_generation"] == 2


@pytest.mark.parametrize("callback", ["request_trailers", "response_trailers"])
def test_trailer_callbacks_are_never_called(make_app, live, guests: dict[str, Path], callback: str) -> None:  # type: ignore[no-untyped-def]
    # Trailers are unsupported (docs/plugin-host.md): a module that traps in its trailer
    # callback serves chunked requests and streamed answers untouched, fail_open or not.
    app = make_app([plugin("trappy", guests["hostile_trap"], config=callback, fail_open=False)])
    trappy = app.state.gateway.plugin("trappy")
    url = live(app)
    with httpx.Client(timeout=10, trust_env=False) as client:
        chunked = client.post(f"{url}/echo", headers=HOSTILE, content=iter([b"a" * 10, b"b" * 10]))
        assert chunked.status_code == 200
        streamed = client.post(f"{url}/v1/chat/completions", headers=HOSTILE, json={"model": "mock-large", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
    assert trappy.stats.traps == 0 and trappy.state == "ready"
