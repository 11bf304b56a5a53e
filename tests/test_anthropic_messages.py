"""Anthropic's `/v1/messages` with the official `anthropic` SDK through a real uvicorn
(issue #14 item 1): requests and streams in Anthropic's format, served by chat
deployments (the embedded mock, and an OpenAI-compatible one called directly), errors in
Anthropic's envelope so the SDK raises the right exception class."""

from __future__ import annotations

import json
from typing import Any, Iterator

import anthropic
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from support import serve

MODELS = [{"model_name": "claude-mock", "litellm_params": {"model": "openai/mock-claude", "api_base": "embedded"}}]


@pytest.fixture
def client(make_app, live) -> Iterator[anthropic.Anthropic]:  # type: ignore[no-untyped-def]
    base = live(make_app([], model_list=MODELS))
    with anthropic.Anthropic(base_url=base, api_key="sk-ant-client", max_retries=0, timeout=60) as sdk:
        yield sdk


def test_a_message_and_its_answer(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="claude-mock", max_tokens=64, system="be brief", messages=[{"role": "user", "content": "hello there"}])
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-mock"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "You said: hello there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 4


def test_a_streamed_message_has_anthropics_events(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="claude-mock", max_tokens=64, messages=[{"role": "user", "content": [{"type": "text", "text": "stream this"}]}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.content[0].text == "You said: stream this"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4


def test_errors_in_anthropics_envelope(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["type"] == "error"  # type: ignore[index]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.post("/v1/messages", body={"model": "claude-mock", "messages": [{"role": "user", "content": "x"}]}, cast_to=httpx.Response)
    assert "max_tokens" in bad.value.body["error"]["message"]  # type: ignore[index]


class ToolProvider:
    """An OpenAI-compatible deployment that records the chat request it got and answers
    with a tool call (whole, or streamed in pieces as OpenAI streams them)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
        if not body.get("stream"):
            return JSONResponse({
                "id": "chatcmpl-tool", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Checking.", "tool_calls": [call]}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
            })  # fmt: skip

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
            doc: dict[str, Any] = {"id": "chatcmpl-tool", "object": "chat.completion.chunk", "created": 1, "model": body["model"], "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else []}
            if usage is not None:
                doc["usage"] = usage
            return b"data: " + json.dumps(doc).encode() + b"\n\n"

        events = [
            chunk({"role": "assistant", "content": "Checking."}),
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
            chunk({}, "tool_calls"),
            chunk({}, usage={"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}),
            b"data: [DONE]\n\n",
        ]

        async def stream() -> Any:
            for event in events:
                yield event

        return StreamingResponse(stream(), media_type="text/event-stream")


@pytest.fixture
def tools_client(make_app, live) -> Iterator[tuple[anthropic.Anthropic, ToolProvider]]:  # type: ignore[no-untyped-def]
    provider = ToolProvider()
    upstream = Starlette(routes=[Route("/v1/chat/completions", provider.chat, methods=["POST"])])
    with serve(upstream) as api_base:
        models = [{"model_name": "claude-tools", "litellm_params": {"model": "openai/tool-model", "api_base": api_base + "/v1", "api_key": "sk-up"}}]
        base = live(make_app([], model_list=models))
        with anthropic.Anthropic(base_url=base, api_key="sk-ant-client", max_retries=0, timeout=60) as sdk:
            yield sdk, provider


TOOLS = [{"name": "get_weather", "description": "Weather for a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def test_tools_translate_both_ways(tools_client: tuple[anthropic.Anthropic, ToolProvider]) -> None:
    client, provider = tools_client
    history = [
        {"role": "user", "content": "weather in Oslo and Bergen?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"city": "Bergen"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "rain"}]},
    ]
    message = client.messages.create(
        model="claude-tools", max_tokens=100, system="you are a weather bot", messages=history, tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "any"}, stop_sequences=["END"], metadata={"user_id": "u-7"},
    )  # fmt: skip
    sent = provider.requests[-1]
    assert sent["model"] == "tool-model"
    assert sent["messages"][0] == {"role": "system", "content": "you are a weather bot"}
    assert sent["messages"][2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Bergen"}'}
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "toolu_0", "content": "rain"}
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert sent["tool_choice"] == "required" and sent["stop"] == ["END"] and sent["user"] == "u-7" and sent["max_tokens"] == 100
    assert [b.type for b in message.content] == ["text", "tool_use"]
    tool = message.content[1]
    assert (tool.id, tool.name, tool.input) == ("call_1", "get_weather", {"city": "Oslo"})  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 7)


def test_a_streamed_tool_call(tools_client: tuple[anthropic.Anthropic, ToolProvider]) -> None:
    client, provider = tools_client
    with client.messages.stream(model="claude-tools", max_tokens=100, messages=[{"role": "user", "content": "weather in Oslo?"}], tools=TOOLS) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert provider.requests[-1]["stream"] is True
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"city": "Oslo"}  # type: ignore[union-attr]  # partial JSON joined
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 7
