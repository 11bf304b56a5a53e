"""LiteLLM proxy config files run as they are (issue #14 items 4 and 5): LiteLLM's own
documented example configs start the gateway (check-config, a real process, and live
requests with the openai SDK through a real uvicorn), their settings mapped and every
unmapped key named in one warning; fallbacks across model groups; live reload of
model_list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import httpx
import openai
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from routeiq.app import create_app
from routeiq.config import load_config
from support import eventually, serve

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).resolve().parent / "litellm_configs"


def _fake_provider() -> Starlette:
    """An OpenAI-compatible provider on loopback: `zephyr-beta` answers 500, a prompt with
    LONG answers 400 context_length_exceeded on every model but `gpt-3.5-turbo-16k`."""

    async def chat(request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        text = body["messages"][-1]["content"]
        if model == "zephyr-beta":
            return JSONResponse({"error": {"message": "overloaded", "type": "server_error", "code": None}}, status_code=500)
        if "LONG" in text and model != "gpt-3.5-turbo-16k":
            error = {"message": "This model's maximum context length is 4097 tokens", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}
            return JSONResponse({"error": error}, status_code=400)
        answer = f"{model} says hi"
        if body.get("stream"):
            async def events() -> AsyncIterator[bytes]:
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]}
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
        return JSONResponse({"id": "c1", "object": "chat.completion", "created": 0, "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}], "usage": usage})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture
def provider() -> Iterator[str]:
    with serve(_fake_provider()) as base:
        yield base + "/v1"


def _env(provider: str) -> dict[str, str]:
    return {
        "OPENAI_API_BASE": provider,
        "OPENAI_API_KEY": "sk-provider",
        "ZEPHYR_API_BASE_1": provider,
        "ZEPHYR_API_BASE_2": provider,
        "FAKE_OPENAI_ENDPOINT": provider,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PASSWORD": "secret",
        "REDIS_PORT": "6379",
    }


# file -> the warnings check-config prints (each names the file and the key)
EXPECTED_WARNINGS = {
    "proxy_quick_start.yaml": ["litellm_settings.success_callback has no RouteIQ equivalent", "general_settings.alerting has no RouteIQ equivalent"],
    "reliability_fallbacks.yaml": [],
    "load_balancing_router_settings.yaml": [
        "router_settings.redis_host has no RouteIQ equivalent",
        "router_settings.redis_password has no RouteIQ equivalent",
        "router_settings.redis_port has no RouteIQ equivalent",
        "model_list[0].tpm: tokens-per-minute limits are not enforced by RouteIQ (rpm is)",
    ],
    "multi_instance_simple_config.yaml": ["litellm_settings.cache has no RouteIQ equivalent", "litellm_settings.cache_params has no RouteIQ equivalent"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_WARNINGS))
def test_litellm_example_configs_pass_check_config(name: str, provider: str) -> None:
    path = CONFIGS / name
    env = {**os.environ, **_env(provider)}
    checked = subprocess.run([sys.executable, "-m", "routeiq", "check-config", str(path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == f"{path}: ok (0 plugins)"
    warned = [line for line in checked.stderr.splitlines() if f"{path}: " in line]
    for expected in EXPECTED_WARNINGS[name]:
        assert sum(f"{path}: {expected}" in line for line in warned) == 1, (expected, checked.stderr)
    assert len(warned) == len(EXPECTED_WARNINGS[name]), checked.stderr
    assert "unknown setting" not in checked.stderr


def test_unset_environment_reference_in_settings_names_the_key(provider: str) -> None:
    path = CONFIGS / "load_balancing_router_settings.yaml"
    env = {k: v for k, v in {**os.environ, **_env(provider)}.items() if k != "REDIS_PASSWORD"}
    checked = subprocess.run([sys.executable, "-m", "routeiq", "check-config", str(path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert checked.returncode == 2
    assert f"routeiq: {path}: router_settings.redis_password: os.environ/REDIS_PASSWORD is not set in the environment" in checked.stderr


def _gateway(name: str, provider: str, monkeypatch: pytest.MonkeyPatch, live: Any, where: Path | None = None, api_key: str = "sk-client") -> tuple[Any, openai.OpenAI]:
    for key, value in _env(provider).items():
        monkeypatch.setenv(key, value)
    path = CONFIGS / name
    if where is not None:  # its state (the key database) goes there, not beside the fixture
        path = where / name
        path.write_bytes((CONFIGS / name).read_bytes())
    app = create_app(load_config(path))
    base = live(app)
    return app, openai.OpenAI(base_url=base + "/v1", api_key=api_key, max_retries=0, timeout=30)


def test_router_settings_are_mapped_and_served(provider: str, monkeypatch: pytest.MonkeyPatch, live: Any) -> None:
    app, sdk = _gateway("load_balancing_router_settings.yaml", provider, monkeypatch, live)
    router = app.state.gateway.config.model.router
    assert (router.strategy, router.retries, router.timeout_s, router.first_byte_timeout_s) == ("least_latency", 2, 30.0, 20.0)
    assert (router.breaker.consecutive_failures, router.breaker.cooldown_s) == (4, 30.0)  # cooled down once failures exceed allowed_fails
    assert router.fallbacks == [{"gpt-4": ["gpt-3.5-turbo"]}]
    answer = sdk.chat.completions.with_raw_response.create(model="gpt-4", messages=[{"role": "user", "content": "hello"}])
    assert answer.parse().choices[0].message.content == "gpt-4 says hi"
    assert answer.headers["x-routeiq-strategy"] == "least_latency"
    assert "x-routeiq-fallback-group" not in answer.headers
    # model_group_alias: gpt-4-turbo is served by gpt-4; rpm is the deployment's budget.
    assert router.model_group_alias == {"gpt-4-turbo": "gpt-4"}
    assert app.state.gateway.config.model.model_list[0].rpm == 6
    aliased = sdk.chat.completions.with_raw_response.create(model="gpt-4-turbo", messages=[{"role": "user", "content": "hello"}])
    assert (aliased.parse().choices[0].message.content, aliased.headers["x-routeiq-model"]) == ("gpt-4 says hi", "gpt-4")
    assert "gpt-4-turbo" in [m.id for m in sdk.models.list()]


def test_litellm_settings_and_general_settings_are_mapped(provider: str, monkeypatch: pytest.MonkeyPatch, live: Any, tmp_path: Path) -> None:
    app, sdk = _gateway("proxy_quick_start.yaml", provider, monkeypatch, live, tmp_path, api_key="sk-1234")
    model = app.state.gateway.config.model
    assert (model.keys.enabled, model.keys.master_key) == (True, "sk-1234")  # as in LiteLLM: the master key turns auth on
    assert all(entry.litellm_params.model_extra["drop_params"] is True for entry in model.model_list)
    answer = sdk.chat.completions.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content == "gpt-3.5-turbo says hi"
    with pytest.raises(openai.AuthenticationError):
        sdk.with_options(api_key="sk-not-the-master-key").chat.completions.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "hello"}])


def test_fallbacks_after_the_groups_own_retries(provider: str, monkeypatch: pytest.MonkeyPatch, live: Any, caplog: pytest.LogCaptureFixture) -> None:
    app, sdk = _gateway("reliability_fallbacks.yaml", provider, monkeypatch, live)
    router = app.state.gateway.config.model.router
    assert (router.retries, router.timeout_s, router.breaker.consecutive_failures) == (3, 10.0, 4)
    hello = [{"role": "user", "content": "hello"}]
    with caplog.at_level("INFO", logger="routeiq.routing"):
        answer = sdk.chat.completions.with_raw_response.create(model="zephyr-beta", messages=hello)
    assert answer.parse().choices[0].message.content == "gpt-3.5-turbo says hi"
    # Both zephyr deployments failed (500), then the fallback group answered.
    assert answer.headers["x-routeiq-model"] == "zephyr-beta"
    assert answer.headers["x-routeiq-fallback-group"] == "gpt-3.5-turbo"
    assert answer.headers["x-routeiq-deployment"] == "gpt-3.5-turbo#0"
    assert answer.headers["x-routeiq-attempts"] == "3"
    request_id = answer.headers["x-request-id"]
    assert any(f"fallback request={request_id} model=zephyr-beta from=zephyr-beta to=gpt-3.5-turbo reason=upstream" in r.getMessage() for r in caplog.records)
    # Streaming takes the same loop.
    with sdk.chat.completions.with_streaming_response.create(model="zephyr-beta", messages=hello, stream=True) as streamed:
        assert streamed.headers["x-routeiq-fallback-group"] == "gpt-3.5-turbo"
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert text == "gpt-3.5-turbo says hi"


def test_context_window_fallbacks_only_on_a_context_length_error(provider: str, monkeypatch: pytest.MonkeyPatch, live: Any) -> None:
    app, sdk = _gateway("reliability_fallbacks.yaml", provider, monkeypatch, live)
    long = [{"role": "user", "content": "LONG " * 10}]
    answer = sdk.chat.completions.with_raw_response.create(model="gpt-3.5-turbo", messages=long)
    assert answer.parse().choices[0].message.content == "gpt-3.5-turbo-16k says hi"
    assert (answer.headers["x-routeiq-model"], answer.headers["x-routeiq-fallback-group"], answer.headers["x-routeiq-attempts"]) == ("gpt-3.5-turbo", "gpt-3.5-turbo-16k", "2")

    # gpt-3.5-turbo-16k has no context window fallbacks: its group's answer stands (here a 200);
    # and an ordinary failure of gpt-3.5-turbo is not a context error: no fallback at all.
    plain = sdk.chat.completions.with_raw_response.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "hello"}])
    assert "x-routeiq-fallback-group" not in plain.headers


def test_model_list_changes_apply_on_live_reload(tmp_path: Path, live: Any) -> None:
    path = tmp_path / "gw.yaml"

    def write(groups: list[str], **router: Any) -> None:
        config = {
            "runtime": {"cache": False},
            "model_list": [{"model_name": g, "litellm_params": {"model": f"openai/mock-{g}", "api_base": "embedded"}} for g in groups],
            "mock": {"models": {"mock-a": {"chunk_delay_ms": 50}}},
            "router_settings": router,
        }
        path.write_text(yaml.safe_dump(config))

    write(["a"])
    app = create_app(load_config(path))
    app.state.gateway.config_watcher.interval_s = 0.05
    base = live(app)
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as http:
        assert http.post("/v1/chat/completions", json={"model": "b", "messages": [{"role": "user", "content": "hi"}]}).status_code == 404
        body = {"model": "a", "stream": True, "messages": [{"role": "user", "content": "one two three four five six"}]}
        with http.stream("POST", "/v1/chat/completions", json=body) as streaming:
            chunks = streaming.iter_raw()
            received = next(chunks)
            write(["b"], num_retries=1)  # group a is gone from the file
            assert eventually(lambda: "b" in [m["id"] for m in http.get("/v1/models").json()["data"]])
            received += b"".join(chunks)  # the request in flight finishes on the old deployments
        assert received.rstrip().endswith(b"data: [DONE]")
        answer = http.post("/v1/chat/completions", json={"model": "b", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200 and answer.headers["x-routeiq-deployment"] == "b#0"
        assert http.post("/v1/chat/completions", json={"model": "a", "messages": [{"role": "user", "content": "hi"}]}).status_code == 404
        health = http.get("/health").json()
        assert health["config"]["needs_restart"] == [] and health["config"]["last_error"] is None
        assert list(health["routing"]["deployments"]) == ["b#0"]
        write(["b"], cooldown_time=5)  # breaker settings are read at startup
        assert eventually(lambda: http.get("/health").json()["config"]["needs_restart"] != [])
        assert "router.breaker" in http.get("/health").json()["config"]["needs_restart"][0]
