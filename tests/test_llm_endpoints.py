"""The OpenAI endpoints besides chat (issue #14 item 1), with the official `openai` SDK
through a real uvicorn: each routed by `model` to its group's deployments, answered by
the embedded mock, by an OpenAI-compatible deployment called directly (another gateway
on loopback stands in for the provider) and through litellm."""

from __future__ import annotations

import base64
import io
import wave
from typing import Any, Iterator

import httpx
import openai
import pytest

from support import serve


def embedded(name: str) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": f"openai/mock-{name}", "api_base": "embedded"}, "model_info": {"id": f"{name}-embedded"}}


MODELS = [embedded("chat"), embedded("embed"), embedded("tts"), embedded("whisper"), embedded("images"), embedded("mod")]


@pytest.fixture
def provider(make_app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A gateway answering from the embedded mock: the "provider" other gateways call."""
    # Its groups are the provider model names the gateways under test ask for.
    with serve(make_app([], model_list=[{**m, "model_name": f"mock-{m['model_name']}"} for m in MODELS])) as base:
        yield base


@pytest.fixture(params=["embedded", "direct", "litellm"])
def client(request: pytest.FixtureRequest, make_app, live, provider: str) -> Iterator[openai.OpenAI]:  # type: ignore[no-untyped-def]
    kind = request.param
    if kind == "embedded":
        models = MODELS
    else:
        models = [
            {
                "model_name": m["model_name"],
                "litellm_params": {"model": f"openai/mock-{m['model_name']}", "api_base": provider + "/v1", "api_key": "sk-provider"},
                "model_info": {"id": f"{m['model_name']}-{kind}", "passthrough": kind == "direct"},
            }
            for m in MODELS
        ]
    base = live(make_app([], model_list=models))
    with openai.OpenAI(base_url=base + "/v1", api_key="sk-client", max_retries=0, timeout=60) as sdk:
        sdk.kind = kind  # type: ignore[attr-defined]
        yield sdk


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="embed", input=["hello", "world"])  # the SDK asks for base64
    assert [len(item.embedding) for item in result.data] == [8, 8]
    assert result.data[0].embedding != result.data[1].embedding
    again = client.embeddings.create(model="embed", input="hello", encoding_format="float")
    assert again.data[0].embedding == pytest.approx(result.data[0].embedding, abs=1e-5)
    assert result.usage.prompt_tokens == 2


def test_completions_streaming_and_not(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="chat", prompt="say hi")
    assert answer.choices[0].text == "You said: say hi"
    assert answer.usage is not None and answer.usage.completion_tokens == 4
    pieces = list(client.completions.create(model="chat", prompt="stream me", stream=True))
    assert "".join(c.choices[0].text for c in pieces if c.choices) == "You said: stream me"


def test_responses_streaming_and_not(client: openai.OpenAI) -> None:
    answer = client.responses.create(model="chat", input="what is up")
    assert answer.output_text == "You said: what is up"
    assert answer.usage is not None and answer.usage.input_tokens == 3
    with client.responses.stream(model="chat", input="stream it") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "You said: stream it" == final.output_text


def test_moderations(client: openai.OpenAI) -> None:
    result = client.moderations.create(model="mod", input=["a nice day", "I will kill the process"])
    assert [r.flagged for r in result.results] == [False, True]
    assert result.results[1].categories.violence is True


def test_image_generation(client: openai.OpenAI) -> None:
    if client.kind == "litellm":  # type: ignore[attr-defined]
        # litellm refuses response_format for openai/ image models (its own parameter check)
        image = client.images.generate(model="images", prompt="a red square", n=2)
        png = (image.data[0].url or "").removeprefix("data:image/png;base64,")
    else:
        image = client.images.generate(model="images", prompt="a red square", response_format="b64_json", n=2)
        png = image.data[0].b64_json or ""
    assert len(image.data) == 2
    assert base64.b64decode(png).startswith(b"\x89PNG")


def test_speech_and_transcription(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model="tts", voice="alloy", input="hello there", response_format="wav")
    if client.kind != "litellm":  # type: ignore[attr-defined]
        with wave.open(io.BytesIO(audio.content)) as w:  # the mock speaks WAV
            assert w.getnframes() > 0
    else:
        assert len(audio.content) > 44
    text = client.audio.transcriptions.create(model="whisper", file=("clip.wav", audio.content, "audio/wav"))
    assert text.text == f"Mock transcript of clip.wav ({len(audio.content)} bytes)."


def test_models_by_id_and_errors_in_openai_shape(client: openai.OpenAI) -> None:
    assert client.models.retrieve("embed").id == "embed"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("nope")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError) as no_model:
        client.post("/embeddings", body={"input": "x"}, cast_to=httpx.Response)
    assert no_model.value.param == "model"


def test_unprefixed_aliases_as_litellm(make_app, live, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([], model_list=MODELS))
    assert http.post(base + "/embeddings", json={"model": "embed", "input": "x", "encoding_format": "float"}).json()["data"][0]["object"] == "embedding"
    assert http.post(base + "/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}).json()["choices"][0]["message"]["content"] == "You said: hi"
    assert http.get(base + "/models/chat").json()["id"] == "chat"


def test_streamed_usage_only_when_asked_as_openai_sends_it(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "count my tokens"}]
    plain = list(client.chat.completions.create(model="chat", messages=messages, stream=True))  # type: ignore[arg-type]
    assert all(chunk.usage is None for chunk in plain)
    assert all(chunk.choices for chunk in plain)
    assert "".join(c.choices[0].delta.content or "" for c in plain) == "You said: count my tokens"
    counted = list(client.chat.completions.create(model="chat", messages=messages, stream=True, stream_options={"include_usage": True}))  # type: ignore[arg-type]
    with_usage = [chunk for chunk in counted if chunk.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is counted[-1]
    assert counted[-1].choices == []
    assert counted[-1].usage.completion_tokens == 5  # type: ignore[union-attr]
    assert [c.choices[0].finish_reason for c in counted[:-1]][-1] == "stop"


def test_bad_operation_requests_get_clear_400s_and_the_gateway_keeps_serving(make_app, live, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([], model_list=MODELS))
    cases = [
        ("/v1/embeddings", {"content": b"{not json"}, "invalid_json"),
        ("/v1/embeddings", {"json": ["a", "list"]}, None),
        ("/v1/embeddings", {"json": {"model": 5, "input": "x"}}, None),
        ("/v1/completions", {"json": {"model": "chat", "prompt": "x", "stream": "yes"}}, None),
        ("/v1/audio/transcriptions", {"json": {"model": "whisper"}}, "invalid_content_type"),
        ("/v1/audio/transcriptions", {"files": {"file": ("a.wav", b"RIFF")}}, "missing_model"),
    ]
    for path, kwargs, code in cases:
        response = http.post(base + path, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 400, (path, kwargs, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
        if code is not None:
            assert error["code"] == code
    assert http.post(base + "/v1/embeddings", json={"model": "embed", "input": "still up", "encoding_format": "float"}).status_code == 200
