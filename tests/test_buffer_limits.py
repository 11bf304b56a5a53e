"""Per-plugin buffer limit (Envoy's per-filter buffer limit): a body a plugin buffers, or
writes with proxy_set_buffer_bytes, can grow only to plugins[].limits.max_buffer_bytes.
A request over it is answered 413; a response over it (headers already sent) is aborted.
Issue #11 item 6. The response side runs an unmodified Rust SDK filter (http_body)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from support import plugin

SDK = Path(__file__).resolve().parents[2] / "shared" / "data" / "proxy-wasm-sdk" / "rust-sdk-v0.2.0" / "wasm32-unknown-unknown"
CAP = 4096


def chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.fixture
def probe_url(make_app, live, guests: dict[str, Path]) -> str:  # type: ignore[no-untyped-def]
    return live(make_app([plugin("hostcall_probe", guests["hostcall_probe"], limits={"max_buffer_bytes": CAP})]))


def test_a_buffered_request_body_over_the_cap_is_a_413_naming_the_setting(probe_url: str, http: httpx.Client, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="routeiq.dispatch")
    probe = {"x-probe": "body_rewrite"}
    fits = http.post(f"{probe_url}/echo", headers=probe, content=chunks(3000))
    assert fits.status_code == 200
    assert fits.json()["BODY"] == "PREFIX:" + "X" * 3000 + ":SUFFIX"  # the probe upper-cases responses

    over = http.post(f"{probe_url}/echo", headers=probe, content=chunks(10 * 1024))  # chunked: no length up front
    assert over.status_code == 413
    # The host's local reply runs the response callbacks too (as Envoy's): the probe upper-cases it.
    assert over.text.startswith('{"ERROR"')
    error = json.loads(over.text.lower())["error"]
    assert error["code"] == "request_too_large" and error["plugin"] == "hostcall_probe"
    assert "plugins[].limits.max_buffer_bytes" in error["message"] and str(CAP) in error["message"]
    assert any("buffer limit of plugin hostcall_probe" in r.getMessage() for r in caplog.records)


def test_a_plugin_cannot_write_a_body_past_its_cap(make_app, live, guests: dict[str, Path], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    seen: list[bytes] = []

    async def upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        seen.append(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = make_app([plugin("hostcall_probe", guests["hostcall_probe"], limits={"max_buffer_bytes": CAP})], upstream={"url": live(upstream)})
    url = live(app)
    # The buffered body fits; the probe's PREFIX:/:SUFFIX writes would take it past the cap,
    # so proxy_set_buffer_bytes answers BAD_ARGUMENT and the body goes on as it stands.
    body = b"y" * (CAP - 7)
    assert http.post(f"{url}/echo", headers={"x-probe": "body_rewrite"}, content=body).status_code == 204
    assert seen == [b"PREFIX:" + body]  # the first write fits exactly, the second did not


@pytest.fixture
def streaming_upstream(live) -> str:  # type: ignore[no-untyped-def]
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        total = int(scope["path"].rsplit("/", 1)[1])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for piece in chunks(total - 6):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"secret", "more_body": False})

    return live(app)


def test_a_buffered_response_over_the_cap_is_aborted_and_the_gateway_stays_up(make_app, live, streaming_upstream: str, http: httpx.Client, caplog: Any) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="routeiq.dispatch")
    policy = {"plugins": {"http_body": {"unpinned": True, "capabilities": ["response_body"]}}}
    url = live(make_app([plugin("http_body", SDK / "http_body.wasm", limits={"max_buffer_bytes": CAP})], upstream={"url": streaming_upstream}, policy=policy))
    # Under the cap the SDK filter buffers the whole response and redacts it, as in Envoy.
    small = http.get(f"{url}/stream/2000")
    assert small.status_code == 200
    assert small.text == "Original message body (2000 bytes) redacted."
    # Over it, the response (its headers already sent) is cut off, not buffered on.
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(f"{url}/stream/{10 * 1024}")
    assert any("response body exceeds the 4096-byte buffer limit of plugin http_body" in r.getMessage() for r in caplog.records)
    assert http.get(f"{url}/stream/100").status_code == 200  # the gateway, and the plugin, go on
    health = http.get(f"{url}/health").json()
    described = next(p for p in health["plugins"] if p["name"] == "http_body")
    assert (described["state"], described["traps"]) == ("ready", 0)
