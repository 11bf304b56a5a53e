"""Plugin ordering, short-circuits, and request rewriting through the chain."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from support import eventually, plugin


def test_request_callbacks_run_in_configured_order(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("first", guests["tagger"], config={"tag": "first"}), plugin("second", guests["tagger"], config={"tag": "second"})])
    with TestClient(app) as client:
        headers = client.get("/echo").json()["headers"]
    assert [v for k, v in headers if k == "x-routeiq-tagged"] == ["first", "second"]


def test_response_callbacks_run_in_reverse_order(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    # probe (headers_write) rewrites the whole response map with set_header_map_pairs and
    # appends x-set-pairs; tagger adds x-routeiq-plugin. Reverse order means tagger's
    # header is already there when the probe rewrites the map.
    app = make_app([plugin("probe", guests["hostcall_probe"]), plugin("tagger", guests["tagger"])])
    with TestClient(app) as client:
        response = client.get("/echo", headers={"x-probe": "headers_write"})
    names = [k.decode() for k, _ in response.headers.raw]
    assert names.index("x-routeiq-plugin") < names.index("x-set-pairs") < names.index("x-probe-seen")


def test_local_response_short_circuits_later_plugins(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("tagger", guests["tagger"]), plugin("probe", guests["hostcall_probe"])])
    with TestClient(app) as client:
        response = client.get("/echo", headers={"x-block": "1", "x-probe": "local_response"})
        assert response.status_code == 403  # the probe's 418 never happened
    # Every context still completes its lifecycle.
    assert eventually(lambda: "probe on_log path=/echo" in app.state.gateway.logs.messages("probe"))

    swapped = make_app([plugin("probe", guests["hostcall_probe"]), plugin("tagger", guests["tagger"])])
    with TestClient(swapped) as client:
        assert client.get("/echo", headers={"x-block": "1", "x-probe": "local_response"}).status_code == 418


def test_no_plugins_is_a_plain_proxy(make_app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(make_app([])) as client:
        response = client.post("/echo?a=1", content=b"raw")
        assert response.status_code == 200
        assert response.json()["body"] == "raw" and response.json()["query"] == "a=1"
        health = client.get("/health").json()
        assert (health["status"], health["upstream"], health["plugins"]) == ("ok", "embedded", [])


def test_models_and_chat_completions_through_the_chain(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("tagger", guests["tagger"]), plugin("redactor", guests["redactor"])])
    with TestClient(app) as client:
        models = client.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["routeiq-mock", "routeiq-mock-large"]
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "routeiq-mock", "messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "AKIAABCDEFGHIJKLMNOP please"}]},
        ).json()
        assert answer["choices"][0]["message"]["content"] == "You said: [REDACTED_KEY] please"
        assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]
        bad = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_redactor_masks_a_128_kib_body_within_default_limits(guests: dict[str, Path]) -> None:
    from routeiq.toolkit.harness import PluginTestHarness

    prose = ("Plain prose with nothing secret in it, just words and spaces. " * 2100).encode()  # ~128 KiB
    body = b'{"messages":[{"role":"user","content":"' + prose + b' mail ada@example.com key sk-' + b"a" * 20 + b'"}]}'
    harness = PluginTestHarness(guests["redactor"], capabilities=["request_body"])
    try:
        for _ in range(3):  # under the default fuel per callback, every time
            exchange = harness.request("POST", "/echo", headers={"content-type": "application/json"}, body=body)
            assert exchange.status == 200
            assert exchange.upstream is not None
            sent = exchange.upstream.body
            assert b"ada@example.com" not in sent and b"[REDACTED_EMAIL]" in sent and b"[REDACTED_KEY]" in sent
            assert sent.startswith(b'{"messages":[{"role":"user","content":"Plain prose') and len(sent) > 128_000
    finally:
        harness.close()
