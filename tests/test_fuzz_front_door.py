"""Fuzzing the HTTP front door (issue #11, item 15b), bounded in examples, not time.

Random methods, paths, headers and bodies on every route of one real gateway (uvicorn
on loopback, a plugin in the chain, the LLM path on). Whatever comes in, the answer is
a status with an OpenAI-shaped error when it is one, never a 500 from an exception, and
the gateway keeps serving with bounded memory.
"""

from __future__ import annotations

import json
import resource
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import plugin

ROUTES = ["/v1/chat/completions", "/v1/models", "/v1/feedback", "/health", "/metrics", "/echo", "/echo/x", "/admin/plugins", "/admin/plugins/tagger/config", "/", "/v1/chat/completions/x", "/%00", "/..%2f..", "/v1//models"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "BREW", "M-SEARCH"]
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200).map(str.strip)  # h11 refuses to send edge spaces

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
chat_like = st.fixed_dictionaries(
    {"messages": st.one_of(json_values, st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "x", ""]) | json_values, "content": json_values}), max_size=3))},
    optional={"model": st.sampled_from(["chat", "auto", "nope"]) | json_values, "stream": json_values, "temperature": json_values, "max_tokens": json_values, "n": json_values},
)
bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    chat_like.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b'{"messages": [{"role": "user", "content": "\\ud800"}]}', b"[" * 5000, b'{"x": NaN}', b"\xff\xfe", b'{"messages": [1e999]}']),
)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def test_front_door_answers_everything_with_a_status(make_app, live, guests) -> None:
    deployment = {"model_name": "chat", "litellm_params": {"model": "openai/mock-a", "api_base": "embedded", "api_key": "sk-test"}, "model_info": {"id": "a"}}
    base = live(make_app([plugin("tagger", guests["tagger"])], model_list=[deployment]))
    client = httpx.Client(timeout=30, trust_env=False)
    rss_before = _rss_mb()
    seen: dict[int, int] = {}

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        method=st.sampled_from(METHODS),
        route=st.sampled_from(ROUTES),
        query=st.text(alphabet="abc=&%20x", max_size=20),
        headers=st.dictionaries(TOKEN, VALUE, max_size=12),
        body=bodies,
    )
    def one(method: str, route: str, query: str, headers: dict[str, str], body: bytes) -> None:
        headers = {k: v for k, v in headers.items() if k not in ("content-length", "transfer-encoding", "host", "connection", "expect")}
        url = base + route + (f"?{query}" if query else "")
        response = client.request(method, url, headers=headers, content=body if method not in ("GET", "HEAD") else None)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code != 500, f"{method} {route}: {response.text[:300]}"
        assert response.status_code < 500 or response.status_code in (502, 503, 504), response.text[:300]
        if response.status_code >= 400 and method != "HEAD" and response.headers.get("content-type", "").startswith("application/json"):
            error: Any = response.json().get("error")
            assert isinstance(error, dict) and isinstance(error.get("message"), str), response.text[:300]

    one()
    client.close()
    assert httpx.get(base + "/health", trust_env=False).status_code == 200
    assert 200 in seen and any(400 <= s < 500 for s in seen)  # the fuzz reached both outcomes
    assert _rss_mb() - rss_before < 300, "memory grew without bound under fuzzing"
