"""Filters built with the public Rust proxy-wasm SDK (v0.2.0, wasm32-unknown-unknown and
wasm32-wasi), unmodified, through a real uvicorn: they do what their source says."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from support import eventually

SDK = Path(__file__).resolve().parents[2] / "shared" / "data" / "proxy-wasm-sdk" / "rust-sdk-v0.2.0"
TARGETS = ["wasm32-unknown-unknown", "wasm32-wasi"]


def sdk_plugin(target: str, example: str, **extra: object) -> dict[str, object]:
    return {"name": example, "wasm": str(SDK / target / f"{example}.wasm"), "log_level": "trace", **extra}


@pytest.mark.parametrize("target", TARGETS)
def test_http_headers_answers_hello_itself_and_passes_the_rest(make_app, live, target: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app([sdk_plugin(target, "http_headers")])
    base = live(app)
    hello = httpx.get(base + "/hello", timeout=30)
    assert (hello.status_code, hello.text) == (200, "Hello, World!\n")
    assert hello.headers["hello"] == "World" and hello.headers["powered-by"] == "proxy-wasm"
    echoed = httpx.get(base + "/echo", headers={"x-traced": "yes"}, timeout=30)
    assert echoed.status_code == 200 and echoed.json()["path"] == "/echo"  # Continue: the upstream answered
    logs = app.state.gateway.logs
    assert eventually(lambda: any(m.endswith("completed.") for m in logs.messages("http_headers")))
    messages = logs.messages("http_headers")
    assert any(m.endswith("-> x-traced: yes") for m in messages)  # request headers traced
    assert any(m.endswith("<- content-type: application/json") for m in messages)  # and response headers


@pytest.mark.parametrize("target", TARGETS)
def test_http_config_adds_the_configured_header(make_app, live, target: str) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([sdk_plugin(target, "http_config", config="from-config")]))
    response = httpx.get(base + "/echo", timeout=30)
    assert response.status_code == 200
    assert response.headers["custom-header"] == "from-config"


@pytest.mark.parametrize("target", TARGETS)
def test_hello_world_logs_at_vm_start_and_on_its_tick(make_app, live, target: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app([sdk_plugin(target, "hello_world")])
    live(app)  # the tick runs on the serving loop
    logs = app.state.gateway.logs
    assert "Hello, World!" in logs.messages("hello_world")
    assert eventually(lambda: any(m.startswith("It's ") for m in logs.messages("hello_world")), timeout=20)  # a 5 s tick
