"""Errors in the client's format everywhere (issue #14 item 2), through a real uvicorn
with the official SDKs: each raises the exception class its status means, with the
gateway's or the deployment's message and code."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from support import plugin, serve

MODELS = [{"model_name": "chat", "litellm_params": {"model": "openai/mock-chat", "api_base": "embedded"}}]


def sdk(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key="sk-client", max_retries=0, timeout=30)


def test_unknown_routes_and_405s_are_openai_errors(make_app, live) -> None:  # type: ignore[no-untyped-def]
    for model_list in ([], MODELS):  # the embedded upstream, and the LLM API
        base = live(make_app([], model_list=model_list))
        with sdk(base) as client:
            with pytest.raises(openai.NotFoundError) as missing:
                client.get("/no/such/route", cast_to=httpx.Response)
            assert missing.value.code == "not_found" and "/v1/no/such/route" in missing.value.message
    with httpx.Client(timeout=30) as http:
        wrong = http.get(base + "/v1/chat/completions")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        assert wrong.json()["error"]["code"] == "method_not_allowed"
        assert http.post(base + "/health").json()["error"]["code"] == "not_found"  # /health is GET only; POST falls through to the upstream


def test_a_chat_request_without_a_model_is_a_400(make_app, live) -> None:  # type: ignore[no-untyped-def]
    with sdk(live(make_app([], model_list=MODELS))) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(messages=[{"role": "user", "content": "hi"}], model="")
        assert bad.value.param == "model"
        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(messages=[{"role": "user", "content": "hi"}], model="nope")
        assert unknown.value.code == "model_not_found"


class FailingProvider:
    """An OpenAI-compatible deployment that answers an error of the status asked for."""

    def __init__(self) -> None:
        self.status = 500

    async def chat(self, request: Request) -> JSONResponse:
        codes = {500: ("server_error", "the provider broke"), 429: ("rate_limit_exceeded", "slow down, says the provider"), 400: ("context_length_exceeded", "too long for the provider")}
        code, message = codes[self.status]
        return JSONResponse({"error": {"message": message, "type": "provider_error", "param": None, "code": code}}, status_code=self.status)


@pytest.fixture
def failing(make_app, live) -> Iterator[tuple[str, FailingProvider]]:  # type: ignore[no-untyped-def]
    provider = FailingProvider()
    with serve(Starlette(routes=[Route("/v1/chat/completions", provider.chat, methods=["POST"])])) as api_base:
        models = [{"model_name": "chat", "litellm_params": {"model": "openai/up", "api_base": api_base + "/v1", "api_key": "sk-up"}}]
        yield live(make_app([], model_list=models, router={"retries": 0})), provider


@pytest.mark.parametrize(
    "status, error, code, message",
    [
        (500, openai.InternalServerError, "server_error", "the provider broke"),
        (429, openai.RateLimitError, "rate_limit_exceeded", "slow down, says the provider"),
        (400, openai.BadRequestError, "context_length_exceeded", "too long for the provider"),
    ],
)
def test_a_deployments_error_keeps_its_status_message_and_code(failing: tuple[str, FailingProvider], status: int, error: Any, code: str, message: str) -> None:
    base, provider = failing
    provider.status = status
    with sdk(base) as client:
        with pytest.raises(error) as raised:
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == status
    assert raised.value.code == code and raised.value.body["message"] == message  # type: ignore[index]


def test_a_failing_plugin_is_an_openai_error_with_its_code(make_app, live, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([plugin("trap", guests["hostile_trap"], config="request_headers")], model_list=MODELS))
    with sdk(base) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-hostile": "1"})
    assert failed.value.status_code == 503
    assert isinstance(failed.value.body, dict) and failed.value.body.get("plugin") == "trap"


def test_messages_errors_are_anthropic_errors(make_app, live) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([], model_list=MODELS))
    with anthropic.Anthropic(base_url=base, api_key="sk-ant", max_retries=0, timeout=30) as client:
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.create(model="nope", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        with pytest.raises(anthropic.APIStatusError) as wrong:
            client.get("/v1/messages", cast_to=httpx.Response)
        assert wrong.value.status_code == 405
        assert wrong.value.body["type"] == "error" and wrong.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_a_failing_plugin_on_messages_is_an_anthropic_error(make_app, live, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([plugin("trap", guests["hostile_trap"], config="request_headers")], model_list=MODELS))
    with anthropic.Anthropic(base_url=base, api_key="sk-ant", max_retries=0, timeout=30) as client:
        with pytest.raises(anthropic.InternalServerError) as failed:
            client.messages.create(model="chat", max_tokens=8, messages=[{"role": "user", "content": "hi"}], extra_headers={"x-hostile": "1"})
    assert failed.value.status_code == 503
    assert failed.value.body["type"] == "error" and failed.value.body["error"]["plugin"] == "trap"  # type: ignore[index]
