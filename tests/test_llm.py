"""The LLM path: OpenAI endpoints, routing, failover and circuit breakers, pass-through
and litellm backends, plugins on the LLM routes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from routeiq.config import ConfigError, parse_config
from routeiq.app import create_app
from routeiq.gateway.embedded_upstream import create_embedded_upstream
from support import FakeClock, eventually, plugin

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}


def deployment(id_: str, model: str = "chat", provider_model: str | None = None, api_base: str = "embedded", **info: Any) -> dict[str, Any]:
    return {
        "model_name": model,
        "litellm_params": {"model": f"openai/{provider_model or 'mock-' + id_}", "api_base": api_base, "api_key": "sk-test"},
        "model_info": {"id": id_, **info},
    }


def llm_app(make_app, deployments: list[dict[str, Any]], plugins: list[dict[str, Any]] | None = None, router: dict[str, Any] | None = None, mock: dict[str, Any] | None = None, **top: Any):  # type: ignore[no-untyped-def]
    return make_app(plugins or [], model_list=deployments, router=router or {}, mock={"models": mock or {}}, **top)


def test_chat_completion_with_usage_and_routing_headers(make_app) -> None:  # type: ignore[no-untyped-def]
    app = llm_app(make_app, [deployment("a"), deployment("b")])
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 200
        body = response.json()
        assert body["choices"][0]["message"]["content"] == "You said: hello there"
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] > 0
        assert response.headers["x-routeiq-model"] == "chat"
        assert response.headers["x-routeiq-deployment"] in ("a", "b")
        assert response.headers["x-routeiq-strategy"] == "weighted_round_robin"
        # Weighted round robin alternates between equal weights.
        second = client.post("/v1/chat/completions", json=CHAT).headers["x-routeiq-deployment"]
        assert {response.headers["x-routeiq-deployment"], second} == {"a", "b"}


def test_models_and_openai_errors(make_app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(llm_app(make_app, [deployment("a"), deployment("x", model="other")])) as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["chat", "other", "auto"]
        missing = client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
        bad = client.post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        auto = client.post("/v1/chat/completions", json={**CHAT, "model": "auto"})
        assert auto.status_code == 200 and auto.headers["x-routeiq-deployment"] in ("a", "x")


def test_streaming_through_plugins_stays_streaming(make_app, live, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = llm_app(
        make_app,
        [deployment("a")],
        plugins=[plugin("tagger", guests["tagger"]), plugin("chunk_counter", guests["chunk_counter"])],
        mock={"mock-a": {"chunk_delay_ms": 120}},
    )
    url = live(app)
    arrivals = []
    began = time.monotonic()
    with httpx.Client(timeout=30, trust_env=False) as client:
        with client.stream("POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "one two three four"}]}) as response:
            assert response.status_code == 200
            assert response.headers["x-routeiq-deployment"] == "a"
            assert response.headers["x-routeiq-plugin"] == "tagger"
            text = b""
            for chunk in response.iter_raw():
                arrivals.append(time.monotonic() - began)
                text += chunk
    events = [e for e in text.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    usage_chunk = json.loads(events[-2][6:])  # asked for: a last chunk of its own, as OpenAI's
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 6
    assert arrivals[-1] - arrivals[0] > 0.5  # chunks spread over the upstream's pace
    logs = app.state.gateway.logs.messages
    assert eventually(lambda: any(m.endswith(f"events={len(events)}") for m in logs("chunk_counter")))


def test_failover_breaker_opens_then_recovers_through_half_open(make_app) -> None:  # type: ignore[no-untyped-def]
    router = {"strategy": "cheapest", "retries": 1, "timeout_s": 0.5, "breaker": {"failure_threshold": 2, "window_s": 30, "cooldown_s": 0.3}}
    clock = FakeClock()
    app = llm_app(make_app, [deployment("a", cost_per_1k_tokens=1), deployment("b", cost_per_1k_tokens=5)], router=router, clock=clock)
    gateway = app.state.gateway
    with TestClient(app) as client:
        def served() -> tuple[str, str]:
            response = client.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 200, response.text
            return response.headers["x-routeiq-deployment"], response.headers["x-routeiq-attempts"]

        assert served() == ("a", "1")  # cheapest first
        gateway.mock.set_behaviour("mock-a", failure_rate=1.0)  # a starts answering 500
        assert served() == ("b", "2")  # failed over
        assert served() == ("b", "2")  # second failure opens a's breaker
        assert client.get("/health").json()["breakers"]["deployment:a"]["state"] == "open"
        assert served() == ("b", "1")  # a is skipped while open
        gateway.mock.set_behaviour("mock-a", failure_rate=0.0, timeout_rate=1.0)  # now a hangs
        clock.now += 0.35  # past the cool-down
        assert served() == ("b", "2")  # half-open probe timed out: open again
        assert client.get("/health").json()["breakers"]["deployment:a"]["state"] == "open"
        gateway.mock.set_behaviour("mock-a", timeout_rate=0.0)  # a is healthy again
        clock.now += 0.35
        assert served() == ("a", "1")  # the half-open probe succeeded: closed
        breaker = client.get("/health").json()["breakers"]["deployment:a"]
        assert breaker["state"] == "closed"
        assert breaker["transitions"] == {"closed->open": 1, "open->half_open": 2, "half_open->open": 1, "half_open->closed": 1}
        metrics = client.get("/metrics").text
    assert 'routeiq_breaker_transitions_total{breaker="deployment:a",from="closed",to="open"} 1.0' in metrics
    assert 'routeiq_breaker_state{breaker="deployment:a"} 0.0' in metrics


def test_all_deployments_failing_is_a_502_then_503_when_breakers_open(make_app) -> None:  # type: ignore[no-untyped-def]
    router = {"retries": 1, "breaker": {"failure_threshold": 1, "cooldown_s": 60}}
    app = llm_app(make_app, [deployment("a"), deployment("b")], router=router, mock={"*": {"failure_rate": 1.0}})
    with TestClient(app) as client:
        first = client.post("/v1/chat/completions", json=CHAT)
        assert first.status_code == 502 and first.json()["error"]["code"] == "upstream_error"
        second = client.post("/v1/chat/completions", json=CHAT)
        assert second.status_code == 503 and second.json()["error"]["code"] == "no_healthy_deployment"
        assert second.headers["retry-after"]


def test_passthrough_and_litellm_backends_against_a_real_upstream(make_app, live) -> None:  # type: ignore[no-untyped-def]
    upstream = live(create_embedded_upstream()) + "/v1"
    deployments = [
        deployment("direct", model="direct", provider_model="routeiq-mock", api_base=upstream),
        deployment("via-litellm", model="translated", provider_model="routeiq-mock", api_base=upstream, passthrough=False),
    ]
    app = llm_app(make_app, deployments)
    kinds = {d.id: d.kind for d in app.state.gateway.llm.router.deployments.values()}
    assert kinds == {"direct": "passthrough", "via-litellm": "litellm"}
    with TestClient(app) as client:
        for model in ("direct", "translated"):
            response = client.post("/v1/chat/completions", json={**CHAT, "model": model})
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == "You said: hello there"
            assert response.json()["usage"]["total_tokens"] > 0
            streamed = client.post("/v1/chat/completions", json={**CHAT, "model": model, "stream": True})
            assert streamed.status_code == 200
            events = [e for e in streamed.text.split("\n\n") if e]
            assert events[-1] == "data: [DONE]"
            content = "".join((json.loads(e[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or "" for e in events[:-1])
            assert content == "You said: hello there"


def test_upstream_4xx_is_passed_through_not_retried(make_app, live) -> None:  # type: ignore[no-untyped-def]
    upstream = live(create_embedded_upstream()) + "/v1"
    app = llm_app(make_app, [deployment("direct", provider_model="routeiq-mock", api_base=upstream), deployment("b")])
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json={"model": "chat", "messages": "not a list"})
    assert response.status_code == 400


def test_strategy_configuration_errors_name_the_field(tmp_path: Path, module_cache_dir: Path) -> None:
    base = {"model_list": [deployment("a")], "runtime": {"cache_dir": str(module_cache_dir)}}
    with pytest.raises(ConfigError, match=r"router\.strategy: unknown strategy 'telepathy'"):
        create_app(parse_config({**base, "router": {"strategy": "telepathy"}}, "gw.yaml", tmp_path / "gw.yaml"))
    bad = tmp_path / "custom_routers"
    bad.mkdir()
    (bad / "broken.py").write_text("from routeiq.strategies.base import RoutingStrategy\nclass Broken(RoutingStrategy):\n    name = 'broken'\n")
    with pytest.raises(ConfigError) as info:
        create_app(parse_config({**base, "router": {"custom_routers": "custom_routers"}}, "gw.yaml", tmp_path / "gw.yaml"))
    assert "router.custom_routers" in str(info.value) and "broken.py" in str(info.value)
    with pytest.raises(ConfigError, match="model_list"):
        create_app(parse_config({**base, "model_list": [deployment("a"), deployment("a")]}, "gw.yaml", tmp_path / "gw.yaml"))


def test_feedback_teaches_the_bandit(make_app) -> None:  # type: ignore[no-untyped-def]
    app = llm_app(make_app, [deployment("a"), deployment("b")], router={"strategy": "contextual_bandit"})
    picks = []
    with TestClient(app) as client:
        for i in range(80):
            response = client.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": f"question number {i % 7}"}]})
            chosen = response.headers["x-routeiq-deployment"]
            picks.append(chosen)
            score = 1.0 if chosen == "b" else 0.0  # the client likes b's answers only
            answer = client.post("/v1/feedback", json={"request_id": response.headers["x-request-id"], "score": score})
            assert answer.status_code == 200
        assert client.post("/v1/feedback", json={"request_id": "never-seen", "score": 1}).status_code == 404
        assert client.post("/v1/feedback", json={"request_id": "x", "score": 7}).status_code == 400
    late = picks[-20:]
    assert late.count("b") >= 17, picks
    assert "a" in picks[:20]  # it did explore before it learned


def test_trained_artifacts_are_verified_on_load(tmp_path: Path, module_cache_dir: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "routing.jsonl"  # the data set's format, small and made here
    rows = []
    for i in range(40):
        good = "google/gemma-2-27b-it" if i % 3 else "mistralai/mistral-7b-instruct-v0.3"
        rows.append({"q_id": i, "query": f"question {i} about {'history' if i % 3 else 'science'}", "gold": ["x"], "results": [
            {"model": "google/gemma-2-27b-it", "performance": 1.0 if good.startswith("google") else 0.0, "cost": 30.0},
            {"model": "mistralai/mistral-7b-instruct-v0.3", "performance": 1.0 if good.startswith("mistral") else 0.0, "cost": 10.0},
        ]})
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    artifact = tmp_path / "knn.json"
    out = subprocess.run([sys.executable, "-m", "routeiq", "route-train", "--strategy", "knn", "--data", str(data), "--out", str(artifact)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "trained knn on 40 examples" in out.stdout
    base = {
        "model_list": [deployment("g", provider_model="google/gemma-2-27b-it"), deployment("m", provider_model="mistralai/mistral-7b-instruct-v0.3")],
        "router": {"strategy": "knn", "artifact": str(artifact)},
        "runtime": {"cache_dir": str(module_cache_dir)},
    }
    app = create_app(parse_config(base, "gw.yaml", tmp_path / "gw.yaml"))
    try:
        with TestClient(app) as client:
            assert client.post("/v1/chat/completions", json=CHAT).headers["x-routeiq-strategy"] == "knn"
    finally:
        app.state.gateway.close()
    tampered = json.loads(artifact.read_text())
    tampered["state"] = {**tampered["state"], "k": 999} if isinstance(tampered.get("state"), dict) else tampered["state"]
    artifact.write_text(json.dumps(tampered))
    with pytest.raises(ConfigError, match=r"router\.artifact"):
        create_app(parse_config(base, "gw.yaml", tmp_path / "gw.yaml"))


def test_clients_hanging_up_mid_stream_do_not_trip_the_deployment_breaker(make_app, live) -> None:  # type: ignore[no-untyped-def]
    router = {"retries": 0, "breaker": {"failure_threshold": 2, "window_s": 30, "cooldown_s": 60}}
    app = llm_app(make_app, [deployment("a")], router=router, mock={"mock-a": {"chunk_delay_ms": 200}})
    url = live(app)
    body = {**CHAT, "stream": True, "messages": [{"role": "user", "content": "one two three four five six"}]}
    for _ in range(4):  # each client reads the first chunk and hangs up
        with httpx.Client(timeout=30, trust_env=False) as client:
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                next(response.iter_raw())
    with httpx.Client(timeout=30, trust_env=False) as client:
        assert eventually(lambda: client.get(f"{url}/health").json()["breakers"]["deployment:a"]["state"] == "closed")
        time.sleep(0.5)  # the abandoned streams have been torn down by now
        assert client.get(f"{url}/health").json()["breakers"]["deployment:a"]["state"] == "closed"
        assert client.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200
