"""Traces (a span per request, per plugin callback, the routing decision and the LLM call
with gen_ai attributes), JSON logs with trace ids, secrets scrubbed."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from routeiq.config import parse_config
from routeiq.app import create_app
from routeiq.log_format import SECRET_PATTERNS, JsonFormatter, TextFormatter, scrub
from support import grant_everything, plugin
from test_llm import deployment


def test_spans_for_request_plugins_routing_and_llm_call(tmp_path: Path, guests: dict[str, Path], module_cache_dir: Path) -> None:
    exporter = InMemorySpanExporter()
    config = parse_config(
        {
            "plugins": [plugin("tagger", guests["tagger"])],
            "policy": grant_everything(["tagger"]),
            "model_list": [deployment("a")],
            "runtime": {"cache_dir": str(module_cache_dir)},
        },
        "gw.yaml",
        tmp_path / "gw.yaml",
    )
    app = create_app(config, span_exporter=exporter)
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["POST /v1/chat/completions"]
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["routeiq.request_id"] == response.headers["x-request-id"]
    callback = spans["plugin tagger proxy_on_request_headers"]
    assert callback.parent.span_id == root.context.span_id
    assert callback.attributes["routeiq.outcome"] == "ok" and callback.attributes["routeiq.fuel_used"] > 0
    route = spans["route"]
    assert route.attributes["routeiq.strategy"] == "weighted_round_robin" and route.attributes["routeiq.chosen"] == "a"
    llm = spans["chat mock-a"]
    assert llm.attributes["gen_ai.operation.name"] == "chat"
    assert llm.attributes["gen_ai.request.model"] == "mock-a"
    assert llm.attributes["gen_ai.usage.output_tokens"] == response.json()["usage"]["completion_tokens"]
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}


def test_no_tracing_configured_means_no_spans(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app([])
    assert app.state.gateway.tracing.tracer is None


def test_json_logs_carry_trace_ids_and_scrub_secrets() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    record = logging.LogRecord("routeiq.x", logging.WARNING, __file__, 1, "called with Authorization: Bearer abc.def and key sk-live-0123456789", None, None)
    with tracer.start_as_current_span("s") as span:
        line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert "abc.def" not in line["message"] and "0123456789" not in line["message"]
    assert scrub('{"api_key": "hunter2"}') == '{"api_key": "[REDACTED]"}'


SECRETISH = st.sampled_from(["Bearer ", "bearer\t", "sk-", "SK-", "AKIA", "api_key", "Api-Key=", "apikey:", "Authorization: ", "secret=", "PASSWORD:", "token=", "'", '"', " ", ",", ";", "=", ":"])
SECRETISH_TEXT = st.lists(st.one_of(SECRETISH, st.text(alphabet="abcdefghijKLMNOPQ0123456789_-./+~= ", max_size=24)), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(SECRETISH_TEXT, st.text(max_size=80)))
def test_scrub_skips_only_lines_that_cannot_hold_a_secret(text: str) -> None:
    """scrub() looks for the patterns' words before substituting: that shortcut must never
    let through what the four substitutions would have redacted."""
    full = text
    for pattern, replacement in SECRET_PATTERNS:
        full = pattern.sub(replacement, full)
    assert scrub(text) == full


def test_text_log_lines_read_as_the_standard_formatter_writes_them() -> None:
    standard = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    ours = TextFormatter()
    now = time.time()
    for created in (now, now + 0.25, now + 1.5, now + 3600.999):  # the cached second, and later ones
        record = logging.LogRecord("routeiq.access", logging.INFO, __file__, 1, "GET %s %d", ("/echo", 200), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        assert ours.format(record) == standard.format(record)


def test_metrics_have_request_and_callback_latency_histograms(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("tagger", guests["tagger"])])
    with TestClient(app) as client:
        for _ in range(3):
            client.get("/echo")
        text = client.get("/metrics").text
    assert "routeiq_request_seconds_count 3.0" in text
    assert 'routeiq_plugin_callback_seconds_count{callback="proxy_on_request_headers",plugin="tagger"} 3.0' in text
    assert 'routeiq_plugin_callback_seconds_bucket{callback="proxy_on_request_headers",le="+Inf",plugin="tagger"} 3.0' in text
