"""GenAI observability (issue #14 item 6): the LLM path's metrics, named after
OpenTelemetry's GenAI semantic conventions, scraped from /metrics of a real uvicorn and
read with prometheus_client's parser; the access log; litellm's log lines."""

from __future__ import annotations

import json
import logging
from typing import Any, Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from routeiq.log_format import LITELLM_LOGGERS, JsonFormatter
from support import serve
from test_llm import deployment


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(v for n, l, v in samples(text) if n == name and all(l.get(k) == want for k, want in labels.items()))


def buckets(text: str, name: str, **labels: str) -> list[tuple[float, float]]:
    return sorted((float(l["le"]), v) for n, l, v in samples(text) if n == name + "_bucket" and all(l.get(k) == want for k, want in labels.items()))


MODELS = [
    deployment("a", cost_per_1k_tokens=2.0),
    deployment("emb", model="embed"),
    deployment("bad", model="flaky"),  # its mock always fails (500)
]
MOCK = {"models": {"mock-bad": {"failure_rate": 1.0}}}
ROUTES = [
    {"name": "chat-route", "match": {"path": "/v1/chat/completions"}, "upstream": "llm"},
    {"name": "rest", "match": {"prefix": "/"}},
]


@pytest.fixture
def gateway(make_app, live) -> Iterator[tuple[str, openai.OpenAI]]:  # type: ignore[no-untyped-def]
    base = live(make_app([], model_list=MODELS, mock=MOCK, routes=ROUTES))
    with openai.OpenAI(base_url=base + "/v1", api_key="sk-client", max_retries=0, timeout=30) as sdk:
        yield base, sdk


def test_genai_metrics_for_chat_streams_and_other_operations(gateway: tuple[str, openai.OpenAI], http: httpx.Client) -> None:
    base, sdk = gateway
    answer = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello there"}])
    assert answer.usage is not None
    chunks = list(sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "stream please"}], stream=True, stream_options={"include_usage": True}))
    streamed = next(c.usage for c in chunks if c.usage is not None)
    embedded = sdk.embeddings.create(model="embed", input="hi", encoding_format="float")
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIStatusError) as failed:
        sdk.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502
    text = http.get(base + "/metrics").text

    # Requests: by config route (else the API path), model group, deployment, status class.
    assert value(text, "routeiq_llm_requests_total", route="chat-route", model_group="chat", deployment="a", status_class="2xx") == 2
    assert value(text, "routeiq_llm_requests_total", route="rest", model_group="embed", deployment="emb", status_class="2xx") == 1
    assert value(text, "routeiq_llm_requests_total", route="chat-route", model_group="", deployment="", status_class="4xx") == 1  # unknown model: no label of its own
    assert value(text, "routeiq_llm_requests_total", route="chat-route", model_group="flaky", deployment="", status_class="5xx") == 1

    # gen_ai.client.operation.duration, one per attempt; a failed attempt has its error.type.
    duration = "gen_ai_client_operation_duration_seconds"
    chat = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "chat", "routeiq_deployment": "a", "gen_ai_response_model": "mock-a", "error_type": ""}
    assert value(text, duration + "_count", **chat) == 2
    assert value(text, duration + "_count", gen_ai_operation_name="embeddings", gen_ai_request_model="embed", routeiq_deployment="emb", gen_ai_provider_name="embedded") == 1
    assert value(text, duration + "_count", gen_ai_request_model="flaky", routeiq_deployment="bad", error_type="500") == 1
    le = buckets(text, duration, **chat)
    assert le[-1] == (float("inf"), 2) and len(le) == 15 and all(a[1] <= b[1] for a, b in zip(le, le[1:]))

    # Tokens, as counters and as gen_ai.client.token.usage; cost from cost_per_1k_tokens.
    prompt = answer.usage.prompt_tokens + streamed.prompt_tokens
    completion = answer.usage.completion_tokens + streamed.completion_tokens
    assert value(text, "routeiq_llm_tokens_total", model_group="chat", deployment="a", token_type="prompt") == prompt
    assert value(text, "routeiq_llm_tokens_total", model_group="chat", deployment="a", token_type="completion") == completion
    assert value(text, "routeiq_llm_tokens_total", model_group="embed", deployment="emb", token_type="prompt") == embedded.usage.prompt_tokens
    assert value(text, "routeiq_llm_cost_total", model_group="chat", deployment="a") == pytest.approx((prompt + completion) / 1000 * 2.0)
    assert value(text, "routeiq_llm_cost_total", deployment="emb") == 0  # no price configured: no cost sample
    usage = "gen_ai_client_token_usage"
    assert value(text, usage + "_sum", gen_ai_request_model="chat", gen_ai_token_type="input") == prompt
    assert value(text, usage + "_sum", gen_ai_request_model="chat", gen_ai_token_type="output") == completion
    assert value(text, usage + "_count", gen_ai_request_model="chat", gen_ai_token_type="output") == 2

    # Streams only: time to first token and time per output token.
    for name in ("gen_ai_server_time_to_first_token_seconds", "gen_ai_server_time_per_output_token_seconds"):
        assert value(text, name + "_count", gen_ai_operation_name="chat", routeiq_deployment="a") == 1
        assert buckets(text, name, routeiq_deployment="a")[-1] == (float("inf"), 1)
    assert value(text, "gen_ai_server_time_to_first_token_seconds_count", gen_ai_operation_name="embeddings") == 0


def test_streamed_text_completion_counts_its_time_to_first_token(gateway: tuple[str, openai.OpenAI], http: httpx.Client) -> None:
    base, sdk = gateway
    pieces = list(sdk.completions.create(model="chat", prompt="stream me", stream=True))
    assert pieces
    text = http.get(base + "/metrics").text
    assert value(text, "gen_ai_server_time_to_first_token_seconds_count", gen_ai_operation_name="text_completion", routeiq_deployment="a") == 1
    assert value(text, "routeiq_llm_requests_total", route="rest", model_group="chat", status_class="2xx") == 1


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "routeiq.access"]


def test_access_log_one_line_per_request(make_app, live, http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="routeiq.access")
    base = live(make_app([], model_list=MODELS, mock=MOCK))
    answer = http.post(base + "/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200
    http.get(base + "/echo/x", headers={"x-request-id": "mine-1"})
    http.get(base + "/metrics")  # not logged
    records = access_records(caplog)
    assert len(records) == 2
    llm, plain = records
    fields: dict[str, Any] = json.loads(JsonFormatter().format(llm))
    usage = answer.json()["usage"]
    assert {k: fields[k] for k in ("method", "path", "status", "model", "deployment", "prompt_tokens", "completion_tokens", "request_id")} == {
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "model": "chat",
        "deployment": "a",
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "request_id": answer.headers["x-request-id"],
    }
    assert fields["latency_ms"] >= 0 and fields["logger"] == "routeiq.access"
    text = llm.getMessage()
    assert text.startswith("POST /v1/chat/completions 200 ") and "deployment=a" in text and f"request_id={answer.headers['x-request-id']}" in text
    plain_fields = json.loads(JsonFormatter().format(plain))
    assert plain_fields["path"] == "/echo/x" and plain_fields["request_id"] == "mine-1" and plain_fields["method"] == "GET"
    assert "model" not in plain_fields and "deployment" not in plain_fields and "prompt_tokens" not in plain_fields


def test_access_log_off(make_app, live, http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="routeiq.access")
    base = live(make_app([], model_list=MODELS, server={"access_log": False}))
    assert http.post(base + "/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    assert access_records(caplog) == []
    # The metrics do not depend on the log; without config routes, the route is the API path.
    assert value(http.get(base + "/metrics").text, "routeiq_llm_requests_total", route="/v1/chat/completions", model_group="chat", status_class="2xx") == 1


def test_litellm_lines_once_and_without_ansi(make_app, live, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    with serve(make_app([], model_list=[deployment("p", model="mock-p")])) as provider:
        litellm_model = {
            "model_name": "chat",
            "litellm_params": {"model": "openai/mock-p", "api_base": provider + "/v1", "api_key": "sk-provider"},
            "model_info": {"id": "via-litellm", "passthrough": False},
        }
        base = live(make_app([], model_list=[litellm_model]))
        with openai.OpenAI(base_url=base + "/v1", api_key="sk-client", max_retries=0, timeout=30) as sdk:
            answer = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "You said: hi"
    litellm_lines = [r for r in caplog.records if r.name in LITELLM_LOGGERS]
    assert litellm_lines, "litellm logged nothing at INFO: the test proves nothing"
    assert not any("\x1b" in r.getMessage() for r in caplog.records)
    # Written once: by the gateway's handlers only, none of litellm's own (coloured) ones.
    for name in LITELLM_LOGGERS:
        assert not [h for h in logging.getLogger(name).handlers if isinstance(h, logging.StreamHandler)]
    assert "\x1b[" not in capfd.readouterr().err
