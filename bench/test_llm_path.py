"""The LLM hot path: one non-streaming chat completion, client -> gateway -> mock upstream
on loopback, with the gateway calling the deployment directly (OpenAI-compatible
pass-through) or through litellm's Router; beside the upstream called directly. Also an
embeddings request and an Anthropic /v1/messages request (translated to chat) on the
pass-through path. And virtual keys (issue #16): one gateway with `keys.enabled` serving
the same chat pass-through with a virtual key (`/v1/chat/completions`, which needs one)
and without (`/chat/completions`, left out of `keys.require_on`): the difference is what
authentication costs on a cached key record.

Gateway and upstream run as separate processes, as in production.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

CHAT = {"model": "direct", "messages": [{"role": "user", "content": "benchmark the hot path"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "process exited"
        try:
            httpx.get(url, timeout=1, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    port = free_port()
    code = f"import uvicorn; from routeiq.gateway.embedded_upstream import create_embedded_upstream; uvicorn.run(create_embedded_upstream(), host='127.0.0.1', port={port}, log_level='warning')"
    proc = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}"
    wait(f"{url}/v1/models", proc)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warn"},
        "model_list": [
            {"model_name": "direct", "litellm_params": {"model": "openai/routeiq-mock", "api_base": f"{upstream}/v1", "api_key": "x"}},
            {"model_name": "litellm", "litellm_params": {"model": "openai/routeiq-mock", "api_base": f"{upstream}/v1", "api_key": "x"}, "model_info": {"passthrough": False}},
        ],
    }
    path = tmp_path_factory.mktemp("gw") / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "routeiq", "serve", "--config", str(path)], env={**os.environ, "LITELLM_LOG": "ERROR"})
    url = f"http://127.0.0.1:{port}"
    wait(f"{url}/health", proc)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


MASTER = "sk-bench-master-key"


@pytest.fixture(scope="module")
def keyed_gateway(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(url, virtual key) of a gateway with keys on for /v1/chat/ only."""
    port = free_port()
    state = tmp_path_factory.mktemp("keyed")
    config = {
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warn"},
        "admin": {"state_dir": str(state / "state")},
        # Default keys.cache_ttl_s (1 s): the key's record is reread about once a second of
        # the run, so the median is a cached lookup, as in the steady state of a busy key.
        "keys": {"enabled": True, "master_key": MASTER, "require_on": ["/v1/chat/"]},
        "model_list": [
            {"model_name": "direct", "litellm_params": {"model": "openai/routeiq-mock", "api_base": f"{upstream}/v1", "api_key": "x"}, "model_info": {"cost_per_1k_tokens": 0.1}},
        ],
    }
    path = state / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "routeiq", "serve", "--config", str(path)], env={**os.environ, "LITELLM_LOG": "ERROR"})
    url = f"http://127.0.0.1:{port}"
    wait(f"{url}/health", proc)
    # A key with everything checked on each request: a budget, rpm/tpm limits, models.
    fields = {"key_alias": "bench", "max_budget": 1e9, "budget_duration": "30d", "rpm_limit": 10**9, "tpm_limit": 10**12, "models": ["direct"]}
    made = httpx.post(f"{url}/key/generate", json=fields, headers={"authorization": f"Bearer {MASTER}"}, timeout=30, trust_env=False)
    assert made.status_code == 200, made.text
    yield url, made.json()["key"]
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, trust_env=False) as c:
        yield c


def run(benchmark, client: httpx.Client, url: str, model: str, headers: dict[str, str] | None = None) -> None:  # type: ignore[no-untyped-def]
    body = {**CHAT, "model": model}

    def call() -> int:
        return client.post(url, json=body, headers=headers).status_code

    for _ in range(20):  # warm connections and litellm's first-call setup
        call()
    assert benchmark.pedantic(call, rounds=300, iterations=1) == 200


def test_upstream_direct(benchmark, client: httpx.Client, upstream: str) -> None:  # type: ignore[no-untyped-def]
    run(benchmark, client, f"{upstream}/v1/chat/completions", "routeiq-mock")


def test_gateway_passthrough(benchmark, client: httpx.Client, gateway: str) -> None:  # type: ignore[no-untyped-def]
    run(benchmark, client, f"{gateway}/v1/chat/completions", "direct")


def test_gateway_via_litellm_router(benchmark, client: httpx.Client, gateway: str) -> None:  # type: ignore[no-untyped-def]
    run(benchmark, client, f"{gateway}/v1/chat/completions", "litellm")


def test_gateway_embeddings_passthrough(benchmark, client: httpx.Client, gateway: str) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "direct", "input": "benchmark the hot path", "encoding_format": "float"}

    def call() -> int:
        return client.post(f"{gateway}/v1/embeddings", json=body).status_code

    for _ in range(20):
        call()
    assert benchmark.pedantic(call, rounds=300, iterations=1) == 200


def test_gateway_anthropic_messages_passthrough(benchmark, client: httpx.Client, gateway: str) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "direct", "max_tokens": 64, "messages": [{"role": "user", "content": "benchmark the hot path"}]}

    def call() -> int:
        return client.post(f"{gateway}/v1/messages", json=body).status_code

    for _ in range(20):
        call()
    assert benchmark.pedantic(call, rounds=300, iterations=1) == 200


def test_gateway_passthrough_keys_on_unauthenticated(benchmark, client: httpx.Client, keyed_gateway: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    url, _ = keyed_gateway
    run(benchmark, client, f"{url}/chat/completions", "direct")


def test_gateway_passthrough_keys_on_authenticated(benchmark, client: httpx.Client, keyed_gateway: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    url, key = keyed_gateway
    run(benchmark, client, f"{url}/v1/chat/completions", "direct", {"authorization": f"Bearer {key}"})
