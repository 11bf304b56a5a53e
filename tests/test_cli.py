"""The `routeiq` command as an operator runs it: a real process, real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support import free_port

ROOT = Path(__file__).resolve().parents[1]


def start(args: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "routeiq", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("gateway did not become healthy")


TOKEN = {"authorization": "Bearer demo-token"}


def test_demo_serve_shows_every_example(guests: dict[str, Path]) -> None:
    port = free_port()
    auth = start(["demo-auth", "--port", "9101"])  # what `./dev demo` starts beside the gateway
    proc = start(["serve", "--config", "demo.yaml", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
            health = client.get("/health").json()
            assert [p["name"] for p in health["plugins"]] == ["tagger", "ext_auth", "rate_limiter", "pii_guard", "token_budget", "redactor", "chunk_counter", "request_counter"]
            assert all(p["state"] == "ready" for p in health["plugins"])
            assert [t["name"] for t in client.get("/mcp/tools").json()["tools"]] == ["unit_convert"]  # docs/mcp.md

            echoed = client.get("/echo/hello").json()
            assert ["x-routeiq-tagged", "demo"] in echoed["headers"]

            denied = client.get("/admin/users")
            assert denied.status_code == 403
            assert denied.json()["error"]["message"] == "blocked by tagger"
            assert client.get("/v1/models", headers={"x-block": "yes"}).status_code == 403

            body = {"model": "routeiq-mock", "messages": [{"role": "user", "content": "I am ann@corp.example, key sk-live-0123456789abcdefXYZ"}]}
            assert client.post("/v1/chat/completions", json=body).status_code == 401  # ext_auth: no token
            answer = client.post("/v1/chat/completions", json=body, headers={**TOKEN, "x-api-key": "demo-key"})
            assert answer.status_code == 200
            content = answer.json()["choices"][0]["message"]["content"]
            assert content == "You said: I am [REDACTED_EMAIL], key [REDACTED_KEY]"
            assert answer.headers["x-routeiq-redactions"] == "2"
            assert answer.headers["x-ratelimit-limit"] == "20"
            assert answer.headers["x-routeiq-deployment"] in ("mock-small", "mock-large")  # the routing decision
            assert answer.headers["x-routeiq-strategy"] == "contextual_bandit"
            assert int(answer.headers["x-token-budget-remaining"]) == 5000
            streamed = client.post("/v1/chat/completions", json={**body, "stream": True}, headers={**TOKEN, "x-api-key": "demo-key"})
            assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
            blocked = client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "password: hunter2"}]}, headers=TOKEN)
            assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "pii_forbidden"
            feedback = client.post("/v1/feedback", json={"request_id": answer.headers["x-request-id"], "score": 1.0}, headers=TOKEN)
            assert feedback.status_code == 200

            statuses = [client.get("/v1/models", headers={**TOKEN, "x-api-key": "greedy"}).status_code for _ in range(22)]
            assert statuses[:20] == [200] * 20 and statuses[20:] == [429, 429]

            metrics = client.get("/metrics").text
            assert "routeiq_plugin_request_counter_requests_total" in metrics
    finally:
        auth.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("gateway did not shut down on SIGINT")
        auth.wait(timeout=10)


def test_python_dash_m_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "routeiq", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.startswith("routeiq ")


def test_bad_config_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("plugins:\n  - name: x\n    wasm: x.wasm\n    limits: {memory_mb: -1}\n")
    proc = subprocess.run([sys.executable, "-m", "routeiq", "serve", "--config", str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "plugins[0].limits.memory_mb" in proc.stderr


def test_broken_plugin_refuses_startup_naming_it(tmp_path: Path, guests: dict[str, Path]) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"plugins:\n  - name: sneaky\n    wasm: {guests['hostile_import']}\n")
    proc = subprocess.run([sys.executable, "-m", "routeiq", "serve", "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert "sneaky" in proc.stderr and "env.proxy_does_not_exist" in proc.stderr
