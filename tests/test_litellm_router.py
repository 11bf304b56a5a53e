"""LiteLLM router settings beyond the example configs (issue #14): model_group_alias,
max_fallbacks, per-deployment rpm, and fallbacks and the client's `user` on the litellm
path (a deployment litellm translates for: `anthropic/...`, or `openai/...` forced through
litellm), each through a real uvicorn with the official openai SDK against a provider on
loopback that records what it was sent."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterator

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from routeiq.config import ConfigError, parse_config
from support import FakeClock, serve

HELLO = [{"role": "user", "content": "hello"}]


class Provider:
    """OpenAI's /v1/chat/completions and Anthropic's /v1/messages: a model whose name starts
    with `fail` answers 500 (in that API's error shape), any other says `<model> says hi`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (API, body) in arrival order

    def models(self) -> list[str]:
        return [body["model"] for _, body in self.requests]

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(("openai", body))
        model = body["model"]
        if model.startswith("fail"):
            return JSONResponse({"error": {"message": f"{model} is overloaded", "type": "server_error", "param": None, "code": "overloaded"}}, status_code=500)
        if body.get("stream"):
            async def events() -> AsyncIterator[bytes]:
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": f"{model} says hi"}, "finish_reason": "stop"}]}
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        message = {"role": "assistant", "content": f"{model} says hi"}
        usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
        return JSONResponse({"id": "c1", "object": "chat.completion", "created": 0, "model": model, "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage})

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(("anthropic", body))
        model = body["model"]
        if model.startswith("fail"):
            return JSONResponse({"type": "error", "error": {"type": "api_error", "message": f"{model} is overloaded"}}, status_code=500)
        usage = {"input_tokens": 3, "output_tokens": 3}
        return JSONResponse({"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [{"type": "text", "text": f"{model} says hi"}], "stop_reason": "end_turn", "stop_sequence": None, "usage": usage})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]), Route("/v1/messages", self.messages, methods=["POST"])])


@pytest.fixture
def provider() -> Iterator[tuple[Provider, str]]:
    fake = Provider()
    with serve(fake.app()) as base:
        yield fake, base


def direct(group: str, model: str, base: str, **entry: Any) -> dict[str, Any]:
    """A deployment called directly (OpenAI-compatible)."""
    return {"model_name": group, "litellm_params": {"model": f"openai/{model}", "api_base": base + "/v1", "api_key": "sk-provider"}, **entry}


def via_litellm(group: str, model: str, base: str) -> dict[str, Any]:
    """An OpenAI-compatible deployment forced through litellm (model_info.passthrough: false)."""
    return {**direct(group, model, base), "model_info": {"passthrough": False}}


def anthropic(group: str, model: str, base: str) -> dict[str, Any]:
    """A deployment only litellm can call: Anthropic's API (litellm posts to {api_base}/v1/messages)."""
    return {"model_name": group, "litellm_params": {"model": f"anthropic/{model}", "api_base": base, "api_key": "sk-ant-provider"}}


@pytest.fixture
def gateway(make_app, live):  # type: ignore[no-untyped-def]
    """gateway(model_list, router_settings) -> an openai SDK client of a live gateway."""
    clients: list[openai.OpenAI] = []

    def start(model_list: list[dict[str, Any]], clock: Any = None, **router_settings: Any) -> openai.OpenAI:
        base = live(make_app([], model_list=model_list, router_settings=router_settings, clock=clock))
        sdk = openai.OpenAI(base_url=base + "/v1", api_key="sk-client", max_retries=0, timeout=30)
        clients.append(sdk)
        return sdk

    yield start
    for sdk in clients:
        sdk.close()


def test_model_group_alias_routes_to_its_group_and_lists_the_visible_ones(provider: tuple[Provider, str], gateway: Any) -> None:
    fake, base = provider
    sdk = gateway(
        [direct("gpt-4", "gpt-4", base), direct("gpt-3.5-turbo", "gpt-3.5-turbo", base)],
        model_group_alias={"gpt-4-turbo": "gpt-4", "internal": {"model": "gpt-3.5-turbo", "hidden": True}},
    )
    listed = [m.id for m in sdk.models.list()]
    assert "gpt-4-turbo" in listed and "internal" not in listed and {"gpt-4", "gpt-3.5-turbo"} <= set(listed)
    answer = sdk.chat.completions.with_raw_response.create(model="gpt-4-turbo", messages=HELLO)
    assert answer.parse().choices[0].message.content == "gpt-4 says hi"
    assert answer.headers["x-routeiq-model"] == "gpt-4"  # the group the alias stands for
    # A hidden alias is routed all the same (and can be retrieved), just not listed.
    assert sdk.chat.completions.create(model="internal", messages=HELLO).choices[0].message.content == "gpt-3.5-turbo says hi"
    assert sdk.models.retrieve("internal").id == "internal"
    with sdk.chat.completions.with_streaming_response.create(model="gpt-4-turbo", messages=HELLO, stream=True) as streamed:
        assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices) == "gpt-4 says hi"
    assert fake.models() == ["gpt-4", "gpt-3.5-turbo", "gpt-4"]


def test_an_alias_falls_back_as_its_group(provider: tuple[Provider, str], gateway: Any) -> None:
    fake, base = provider
    sdk = gateway([direct("primary", "fail-primary", base), direct("backup", "backup", base)], model_group_alias={"latest": "primary"}, fallbacks=[{"primary": ["backup"]}], num_retries=0)
    answer = sdk.chat.completions.with_raw_response.create(model="latest", messages=HELLO)
    assert answer.parse().choices[0].message.content == "backup says hi"
    assert (answer.headers["x-routeiq-model"], answer.headers["x-routeiq-fallback-group"]) == ("primary", "backup")


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ({"x": "no-such-group"}, "router.model_group_alias.x: 'no-such-group' is not a model group of model_list"),
        ({"chat": "chat"}, "router.model_group_alias.chat: 'chat' is a model group of model_list itself"),
        ({"x": {"model": "chat", "hiden": True}}, "router.model_group_alias.x.hiden: unknown setting"),
    ],
)
def test_a_bad_model_group_alias_is_refused_naming_it(alias: dict[str, Any], message: str) -> None:
    data = {"model_list": [{"model_name": "chat", "litellm_params": {"model": "openai/mock", "api_base": "embedded"}}], "router_settings": {"model_group_alias": alias}}
    with pytest.raises(ConfigError) as raised:
        parse_config(data, "gw.yaml")
    assert str(raised.value) == f"gw.yaml: {message}"


def test_max_fallbacks_caps_the_fallback_groups_tried(provider: tuple[Provider, str], gateway: Any) -> None:
    fake, base = provider
    groups = [direct("a", "fail-a", base), direct("b", "fail-b", base), direct("c", "fail-c", base), direct("ok", "ok", base)]
    chain = [{"a": ["b", "c", "ok"]}]
    capped = gateway(groups, fallbacks=chain, num_retries=0, max_fallbacks=2)
    with pytest.raises(openai.InternalServerError) as raised:
        capped.chat.completions.create(model="a", messages=HELLO)
    assert "fail-c is overloaded" in raised.value.message  # the last group tried: its own error
    assert fake.models() == ["fail-a", "fail-b", "fail-c"]

    fake.requests.clear()
    default = gateway(groups, fallbacks=chain, num_retries=0)  # LiteLLM's default, 5
    answer = default.chat.completions.with_raw_response.create(model="a", messages=HELLO)
    assert (answer.headers["x-routeiq-fallback-group"], answer.headers["x-routeiq-attempts"]) == ("ok", "4")
    assert fake.models() == ["fail-a", "fail-b", "fail-c", "ok"]

    fake.requests.clear()
    off = gateway(groups, fallbacks=chain, num_retries=0, max_fallbacks=0)
    with pytest.raises(openai.InternalServerError):
        off.chat.completions.create(model="a", messages=HELLO)
    assert fake.models() == ["fail-a"]


@pytest.mark.parametrize("failing", ["anthropic", "via_litellm"])
def test_fallbacks_from_a_litellm_path_deployment(provider: tuple[Provider, str], gateway: Any, failing: str) -> None:
    fake, base = provider
    primary = anthropic("claude", "fail-claude", base) if failing == "anthropic" else via_litellm("claude", "fail-claude", base)
    sdk = gateway([primary, direct("gpt", "gpt-backup", base)], fallbacks=[{"claude": ["gpt"]}], num_retries=0)
    answer = sdk.chat.completions.with_raw_response.create(model="claude", messages=HELLO)
    assert answer.parse().choices[0].message.content == "gpt-backup says hi"
    assert (answer.headers["x-routeiq-model"], answer.headers["x-routeiq-fallback-group"], answer.headers["x-routeiq-attempts"]) == ("claude", "gpt", "2")
    assert fake.requests[0] == ("anthropic" if failing == "anthropic" else "openai", fake.requests[0][1])
    assert fake.models() == ["fail-claude", "gpt-backup"]  # litellm did not retry on its own
    with sdk.chat.completions.with_streaming_response.create(model="claude", messages=HELLO, stream=True) as streamed:
        assert streamed.headers["x-routeiq-fallback-group"] == "gpt"
        assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices) == "gpt-backup says hi"


def test_fallbacks_to_a_litellm_path_deployment(provider: tuple[Provider, str], gateway: Any) -> None:
    fake, base = provider
    sdk = gateway([direct("gpt", "fail-gpt", base), anthropic("claude", "claude-backup", base)], fallbacks=[{"gpt": ["claude"]}], num_retries=0)
    answer = sdk.chat.completions.with_raw_response.create(model="gpt", messages=HELLO)
    assert answer.parse().choices[0].message.content == "claude-backup says hi"
    assert answer.headers["x-routeiq-fallback-group"] == "claude"


def test_the_clients_user_reaches_a_litellm_path_deployment(provider: tuple[Provider, str], gateway: Any) -> None:
    fake, base = provider
    sdk = gateway([via_litellm("gpt", "gpt-x", base), anthropic("claude", "claude-x", base), direct("direct", "gpt-d", base)])
    for stream in (False, True):
        for model in ("gpt", "claude", "direct"):
            fake.requests.clear()
            if stream:
                with sdk.chat.completions.with_streaming_response.create(model=model, messages=HELLO, user="u-42", stream=True) as streamed:
                    list(streamed.parse())
            else:
                sdk.chat.completions.create(model=model, messages=HELLO, user="u-42")
            api, sent = fake.requests[-1]
            # OpenAI's `user`; Anthropic's is metadata.user_id (litellm's translation).
            assert (sent["metadata"]["user_id"] if api == "anthropic" else sent["user"]) == "u-42", (model, stream, sent)


def test_rpm_ranks_a_deployment_over_its_minute_budget_last(provider: tuple[Provider, str], gateway: Any) -> None:
    fake, base = provider
    clock = FakeClock()
    cheap = direct("chat", "cheap", base, rpm=2, model_info={"id": "cheap", "cost_per_1k_tokens": 0.1})
    # rpm in litellm_params, as LiteLLM's docs also give it.
    dear = direct("chat", "dear", base, model_info={"id": "dear", "cost_per_1k_tokens": 1.0})
    dear["litellm_params"]["rpm"] = 1
    sdk = gateway([cheap, dear], clock=clock, routing_strategy="cost-based-routing")

    def served() -> str:
        return sdk.chat.completions.with_raw_response.create(model="chat", messages=HELLO).headers["x-routeiq-deployment"]

    assert [served(), served()] == ["cheap", "cheap"]
    assert served() == "dear"  # cheap has had its 2 this minute
    assert served() == "cheap"  # both over: not refused, ranked as the strategy says
    clock.advance(60)  # a new minute, a new budget
    assert [served(), served(), served()] == ["cheap", "cheap", "dear"]
    health = httpx.get(str(sdk.base_url).removesuffix("/v1/") + "/health", timeout=10).json()["routing"]["deployments"]
    assert (health["cheap"]["rpm"], health["dear"]["rpm"]) == ({"rpm": 2, "used_this_minute": 2}, {"rpm": 1, "used_this_minute": 1})
