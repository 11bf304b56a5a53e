"""The capability examples end to end: rate limiter (one worker, then two sharing a real
Redis), external auth by callout, plugin metrics."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from callout_service import create_callout_service
from support import eventually, free_port, plugin

ROOT = Path(__file__).resolve().parents[1]


def limiter_policy() -> dict:  # type: ignore[type-arg]
    return {"plugins": {"rate_limiter": {"unpinned": True, "capabilities": ["shared_kv"]}}}


def test_rate_limiter_holds_its_limit_per_key(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    # `header` is the opt-in (spoofable) keying for gateways without virtual keys.
    app = make_app([plugin("rate_limiter", guests["rate_limiter"], config={"limit": 3, "window_s": 86400, "header": "x-api-key"})], policy=limiter_policy())
    with TestClient(app) as client:
        answers = [client.get("/echo", headers={"x-api-key": "alice"}) for _ in range(5)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
        assert [r.headers.get("x-ratelimit-remaining") for r in answers[:3]] == ["2", "1", "0"]
        limited = answers[3]
        assert limited.json()["error"]["type"] == "rate_limit_exceeded"
        assert 0 < int(limited.headers["retry-after"]) <= 86400
        assert client.get("/echo", headers={"x-api-key": "bob"}).status_code == 200  # keys are independent
        # A header too long for a KV key is fingerprinted, not a way around the limit.
        long = {"x-api-key": "x" * 300}
        assert [client.get("/echo", headers=long).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_rate_limiter_without_a_header_option_ignores_x_api_key(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    # The safe default without virtual keys: the client address, never a client-chosen header.
    app = make_app([plugin("rate_limiter", guests["rate_limiter"], config={"limit": 2, "window_s": 86400})], policy=limiter_policy())
    with TestClient(app) as client:
        statuses = [client.get("/echo", headers={"x-api-key": f"spoofed-{i}"}).status_code for i in range(3)]
    assert statuses == [200, 200, 429]


MASTER = "sk-master-0123456789"


def virtual_key(base: str, alias: str) -> str:
    made = httpx.post(f"{base}/key/generate", json={"key_alias": alias}, headers={"authorization": f"Bearer {MASTER}"}, timeout=30, trust_env=False)
    assert made.status_code == 200, made.text
    return str(made.json()["key"])


@pytest.mark.parametrize("limiter", ["rate_limiter", "py_rate_limiter"])
def test_a_virtual_key_cannot_escape_the_rate_limit_by_changing_x_api_key(make_app, live, guests: dict[str, Path], request, tmp_path: Path, limiter: str) -> None:  # type: ignore[no-untyped-def]
    module = guests[limiter] if limiter == "rate_limiter" else request.getfixturevalue("py_guests")[limiter]
    # Even with the header opt-in configured, the authenticated consumer wins over it.
    config = {"limit": 2, "window_s": 86400, "header": "x-api-key"}
    app = make_app(
        [plugin(limiter, module, config=config)],
        policy={"plugins": {limiter: {"unpinned": True, "capabilities": ["shared_kv"]}}},
        keys={"enabled": True, "master_key": MASTER, "require_on": ["/echo"]},
        admin={"state_dir": str(tmp_path / "state")},
    )
    base = live(app)
    alice, bob = virtual_key(base, "alice"), virtual_key(base, "bob")
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        statuses = [client.get("/echo", headers={"authorization": f"Bearer {alice}", "x-api-key": f"spoofed-{i}"}).status_code for i in range(3)]
        assert statuses == [200, 200, 429]  # two x-api-key values, one virtual key: one quota
        other = client.get("/echo", headers={"authorization": f"Bearer {bob}", "x-api-key": "spoofed-0"})
        assert other.status_code == 200 and other.headers["x-ratelimit-remaining"] == "1"  # bob's own quota


def test_a_virtual_key_cannot_escape_the_token_budget_by_changing_x_api_key(make_app, live, guests: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(
        [plugin("token_budget", guests["token_budget"], config={"budget_tokens": 10, "window_s": 86400, "header": "x-api-key"})],
        policy={"plugins": {"token_budget": {"unpinned": True, "capabilities": ["llm_request", "shared_kv"]}}},
        keys={"enabled": True, "master_key": MASTER},
        admin={"state_dir": str(tmp_path / "state")},
        model_list=[{"model_name": "chat", "litellm_params": {"model": "openai/mock", "api_base": "embedded"}}],
    )
    base = live(app)
    alice = virtual_key(base, "alice")
    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi there friend"}]}  # 8 tokens
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        statuses, remaining = [], []
        for i in range(4):
            answer = client.post("/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {alice}", "x-api-key": f"spoofed-{i}"})
            statuses.append(answer.status_code)
            remaining.append(answer.headers.get("x-token-budget-remaining"))
            if answer.status_code == 200:  # usage is charged at proxy_on_log, after the answer
                used = 10 - int(answer.headers["x-token-budget-remaining"]) + answer.json()["usage"]["total_tokens"]
                assert eventually(lambda: f"used={used}" in " ".join(app.state.gateway.logs.messages("token_budget")))
    assert statuses == [200, 200, 429, 429] and remaining[:2] == ["10", "2"]


def test_rate_limiter_holds_across_two_workers_sharing_redis(guests: dict[str, Path], redis_url: str, tmp_path: Path) -> None:
    limit = 10
    config = {
        "server": {"host": "127.0.0.1", "port": free_port(), "workers": 2},
        "kv": {"backend": "redis", "url": redis_url, "prefix": f"w{time.monotonic_ns()}"},
        "policy": limiter_policy(),
        "runtime": {"cache_dir": str(tmp_path / "cache")},
        "plugins": [plugin("rate_limiter", guests["rate_limiter"], config={"limit": limit, "window_s": 86400})],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "routeiq", "serve", "--config", str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{config['server']['port']}"
    try:
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2:  # every worker is up and answering
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, f"only saw workers {pids}"
            try:
                with httpx.Client(timeout=2, trust_env=False) as fresh:  # a new connection each time
                    pids.add(fresh.get(f"{url}/health").json()["pid"])
            except httpx.HTTPError:
                time.sleep(0.1)

        def one(_: int) -> tuple[int, int]:
            with httpx.Client(timeout=10, trust_env=False) as fresh:
                response = fresh.get(f"{url}/echo", headers={"x-api-key": "shared"})
                return response.status_code, 0

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            statuses = [status for status, _ in pool.map(one, range(40))]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    # The gateway's log says why, if a request was refused for another reason.
    assert (statuses.count(200), statuses.count(429)) == (limit, 40 - limit), (statuses, output[-4000:])


# --------------------------------------------------------------------- ext auth
def auth_app(make_app, guests: dict[str, Path], upstream: str, fail_open: bool = False, timeout_ms: int = 500, path: str = "/check"):  # type: ignore[no-untyped-def]
    host, port = upstream.rsplit(":", 1)
    policy = {"plugins": {"ext_auth": {"unpinned": True, "capabilities": ["http_callout"], "callouts": [{"scheme": "http", "host": host, "port": int(port), "methods": ["GET"]}]}}}
    config = {"upstream": upstream, "path": path, "timeout_ms": timeout_ms}
    return make_app([plugin("ext_auth", guests["ext_auth"], config=config, fail_open=fail_open)], policy=policy)


@pytest.fixture
def auth_service(live) -> str:  # type: ignore[no-untyped-def]
    return live(create_callout_service()).removeprefix("http://")


def test_ext_auth_allows_and_denies(make_app, guests: dict[str, Path], auth_service: str) -> None:  # type: ignore[no-untyped-def]
    with TestClient(auth_app(make_app, guests, auth_service)) as client:
        allowed = client.get("/echo", headers={"authorization": "Bearer good-token", "x-auth-user": "mallory"})
        assert allowed.status_code == 200
        seen = [v for k, v in allowed.json()["headers"] if k == "x-auth-user"]
        assert seen == ["alice"]  # set by the auth service, the client's forgery dropped
        denied = client.get("/echo", headers={"authorization": "Bearer stolen"})
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == "Bearer"
        assert denied.json()["error"]["type"] == "authentication_error"
        assert client.get("/echo").status_code == 401


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail_closed", "fail_open"])
def test_ext_auth_callout_timeout_follows_fail_open(make_app, guests: dict[str, Path], auth_service: str, fail_open: bool) -> None:  # type: ignore[no-untyped-def]
    app = auth_app(make_app, guests, auth_service, fail_open=fail_open, timeout_ms=200, path="/slow")
    with TestClient(app) as client:
        began = time.monotonic()
        response = client.get("/echo", headers={"authorization": "Bearer good-token"})
        assert time.monotonic() - began < 1.5  # the 2 s service was cut off at 200 ms
    if fail_open:
        assert response.status_code == 200
    else:
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "callout_timeout"
    assert "ext_auth: auth call failed" in app.state.gateway.logs.messages("ext_auth")


def test_ext_auth_with_the_service_down(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    with TestClient(auth_app(make_app, guests, f"127.0.0.1:{free_port()}")) as client:
        response = client.get("/echo", headers={"authorization": "Bearer good-token"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "callout_failed"


# ---------------------------------------------------------------------- metrics
def test_request_counter_exports_plugin_metrics(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    policy = {"plugins": {"request_counter": {"unpinned": True, "capabilities": ["metrics"]}}}
    app = make_app([plugin("request_counter", guests["request_counter"])], policy=policy)
    with TestClient(app) as client:
        seen = [client.get("/echo").headers["x-requests-seen"] for _ in range(3)]
        assert seen == ["1", "2", "3"]
        text = client.get("/metrics").text
    assert "routeiq_plugin_request_counter_requests_total 3.0" in text
    assert "routeiq_plugin_request_counter_request_header_bytes_count 3.0" in text
    assert "routeiq_plugin_request_counter_in_flight 0.0" in text
    assert "# TYPE routeiq_plugin_request_counter_responses_5xx_total counter" in text
