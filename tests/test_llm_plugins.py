"""Plugins on LLM traffic through the routeiq_* extension calls (CBOR), and the two
examples built on them: pii_guard and token_budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from routeiq.abi.proxy_wasm import Status
from support import eventually, grant_everything, plugin
from test_llm import deployment

CHAT = {
    "model": "chat",
    "temperature": 0.2,
    "max_tokens": 50,
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
}


def app_with(make_app, plugins: list[dict[str, Any]], policy: dict[str, Any] | None = None, **top: Any):  # type: ignore[no-untyped-def]
    names = [p["name"] for p in plugins]
    return make_app(
        plugins,
        policy=policy or grant_everything(names),
        model_list=[deployment("a", model="chat"), deployment("b", model="premium")],
        router={"strategy": "weighted_round_robin"},
        **top,
    )


def lines(text: str) -> dict[str, str]:
    return dict(line.partition("=")[::2] for line in text.splitlines())


def test_plugins_read_the_parsed_chat_request(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app_with(make_app, [plugin("probe", guests["hostcall_probe"])])) as client:
        got = lines(client.post("/v1/chat/completions", json=CHAT, headers={"x-probe": "llm"}).text)
        assert got == {"status": "0", "model": "chat", "messages": "2", "first_role": "system", "stream": "0", "params": "max_tokens,temperature"}
        # Not an LLM request: NOT_FOUND.
        assert lines(client.post("/echo", json=CHAT, headers={"x-probe": "llm"}).text) == {"status": str(Status.NOT_FOUND)}


def test_plugins_rewrite_messages_and_pin_models(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app_with(make_app, [plugin("probe", guests["hostcall_probe"])])) as client:
        response = client.post(
            "/v1/chat/completions",
            json=CHAT,
            headers={"x-probe": "llm", "x-llm-pass": "1", "x-pin-model": "premium", "x-set-content": "rewritten by a plugin"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "You said: rewritten by a plugin"
        assert response.headers["x-routeiq-model"] == "premium" and response.headers["x-routeiq-deployment"] == "b"
        assert "pin_status=0" in response.headers["x-probe-llm"] and "set_status=0" in response.headers["x-probe-llm"]
        unknown = client.post("/v1/chat/completions", json=CHAT, headers={"x-probe": "llm", "x-pin-model": "gpt-9"})
        assert lines(unknown.text)["pin_status"] == str(Status.NOT_FOUND)


def test_bad_cbor_from_a_guest_is_a_status_not_a_crash(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = app_with(make_app, [plugin("probe", guests["hostcall_probe"])])
    with TestClient(app) as client:
        got = lines(client.post("/v1/chat/completions", json=CHAT, headers={"x-probe": "llm_bad_cbor"}).text)
        assert got == {f"{name}_status": str(Status.PARSE_FAILURE) for name in ("garbage", "truncated", "wrong_shape", "deep", "huge_len")}
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert app.state.gateway.plugin("probe").stats.traps == 0


def test_response_and_usage_reach_on_log(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = app_with(make_app, [plugin("probe", guests["hostcall_probe"])])
    with TestClient(app) as client:
        plain = client.post("/v1/chat/completions", json=CHAT, headers={"x-probe": "llm_response"})
        assert plain.headers["x-probe-llm-response"] == "status=0;deployment=a;strategy=weighted_round_robin"
        total = plain.json()["usage"]["total_tokens"]
        assert eventually(lambda: f"probe llm_response status=0 deployment=a total_tokens={total}" in app.state.gateway.logs.messages("probe"))
        streamed = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers={"x-probe": "llm_response"})
        assert streamed.status_code == 200
        assert eventually(lambda: sum("probe llm_response status=0 deployment=a" in m for m in app.state.gateway.logs.messages("probe")) == 2)


def test_llm_calls_need_the_llm_request_capability(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    policy = {"plugins": {"pii_guard": {"unpinned": True, "capabilities": []}}}
    from routeiq.app import PluginStartupError

    try:
        app_with(make_app, [plugin("pii_guard", guests["pii_guard"])], policy=policy)
    except PluginStartupError as exc:
        assert "needs llm_request" in str(exc)
    else:
        raise AssertionError("pii_guard loaded without llm_request")


def test_pii_guard_blocks_and_redacts(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = app_with(make_app, [plugin("pii_guard", guests["pii_guard"], config={"forbidden": ["password:"], "redact": True})])
    with TestClient(app) as client:
        blocked = client.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "my PASSWORD: hunter2"}]})
        assert blocked.status_code == 400
        assert blocked.json()["error"]["code"] == "pii_forbidden"
        redacted = client.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "mail ann@corp.example or call +1 415 555 0100"}]})
        assert redacted.status_code == 200
        assert redacted.json()["choices"][0]["message"]["content"] == "You said: mail [EMAIL] or call [PHONE]"
        assert redacted.headers["x-routeiq-pii-redactions"] == "2"


def test_token_budget_counts_usage_per_key(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = app_with(make_app, [plugin("token_budget", guests["token_budget"], config={"budget_tokens": 20, "window_s": 86400, "header": "x-api-key"})])
    with TestClient(app) as client:
        spent = 0
        statuses = []
        for _ in range(6):
            response = client.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": "team-a"})
            statuses.append(response.status_code)
            if response.status_code == 200:
                assert response.headers["x-token-budget-remaining"] == str(20 - spent)
                spent += response.json()["usage"]["total_tokens"]
                # usage is charged at proxy_on_log, after the client has its answer
                assert eventually(lambda: f"used={spent}" in " ".join(app.state.gateway.logs.messages("token_budget")))
        assert statuses[0] == 200 and statuses[-1] == 429
        assert spent >= 20
        assert client.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": "team-b"}).status_code == 200
    # the key is a credential: the logs only ever see its fingerprint
    logs = " ".join(app.state.gateway.logs.messages("token_budget"))
    assert "team-a" not in logs and "key=k-" in logs
