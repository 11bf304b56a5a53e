"""The `routeiq` command as an operator runs it: a real process, real sockets."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from routeiq.admin.auth import hash_key
from support import eventually, free_port
from test_mcp import session

ROOT = Path(__file__).resolve().parents[1]


def start(args: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "routeiq", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until `proc` accepts connections on loopback `port` (it exits if the port is taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


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


TOKEN = {"authorization": "Bearer demo-token"}  # the demo auth service's (ext_auth on /echo/private/)
MASTER = {"authorization": "Bearer sk-demo-master-key"}  # demo.yaml keys.master_key, as in the README
DEMO_ADMIN_KEY, DEMO_VIEWER_KEY = "riq-demo-admin-key", "riq-demo-viewer-key"  # demo.yaml admin.keys, as in the README


def new_key(client: httpx.Client, **fields: object) -> str:
    made = client.post("/key/generate", json=fields, headers=MASTER)
    assert made.status_code == 200, made.text
    return str(made.json()["key"])


def test_demo_serve_shows_every_example(guests: dict[str, Path]) -> None:
    port = free_port()
    auth = start(["demo-auth", "--port", "9101"])  # what `./dev demo` starts beside the gateway
    proc = start(["serve", "--config", "demo.yaml", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_listening(9101, auth)
        wait_healthy(url, proc, timeout=300)  # the first start compiles the Python tool component (cached after)
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
            health = client.get("/health").json()
            assert [p["name"] for p in health["plugins"]] == ["tagger", "ext_auth", "rate_limiter", "pii_guard", "token_budget", "redactor", "chunk_counter", "request_counter"]
            assert all(p["state"] == "ready" for p in health["plugins"])
            assert client.get("/mcp/tools").status_code == 401  # keys are on in the demo: /mcp needs one
            listed = [t["name"] for t in client.get("/mcp/tools", headers=MASTER).json()["tools"]]
            assert listed == ["unit_convert", "currency_convert", "text_stats", "c_checksum"]  # README, docs/mcp.md
            # The README's MCP client: currency_convert asks the demo rates service (cluster `rates`).
            fx = session(url, lambda s: s.call_tool("currency_convert", {"amount": 10, "from": "EUR", "to": "USD"}), key="sk-demo-master-key")
            assert not fx.is_error and fx.structured_content["currency"] == "USD" and fx.structured_content["amount"] > 10
            stats = session(url, lambda s: s.call_tool("text_stats", {"text": "To be, or not to be."}), key="sk-demo-master-key")
            assert stats.structured_content["words"] == 6 and stats.structured_content["top_words"][0] == {"word": "to", "count": 2}

            echoed = client.get("/echo/hello").json()
            assert ["x-routeiq-tagged", "demo"] in echoed["headers"]

            # The README's walk-through: virtual keys guard the LLM API, before any plugin.
            missing = client.get("/v1/models")
            assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
            key = new_key(client, user_id="ann", max_budget=0.5, budget_duration="1d", models=["routeiq-mock"])
            KEY = {"authorization": f"Bearer {key}"}
            assert client.get("/v1/models", headers=KEY).status_code == 200

            denied = client.get("/admin/users")
            assert denied.status_code == 403
            assert denied.json()["error"]["message"] == "blocked by tagger"
            assert client.get("/v1/models", headers={**KEY, "x-block": "yes"}).status_code == 403
            assert client.get("/echo/private/x").status_code == 401  # ext_auth: no demo token
            assert client.get("/echo/private/x", headers=TOKEN).status_code == 200

            body = {"model": "routeiq-mock", "messages": [{"role": "user", "content": "I am ann@corp.example, key sk-live-0123456789abcdefXYZ"}]}
            answer = client.post("/v1/chat/completions", json=body, headers={**KEY, "x-api-key": "demo-key"})
            assert answer.status_code == 200
            content = answer.json()["choices"][0]["message"]["content"]
            assert content == "You said: I am [REDACTED_EMAIL], key [REDACTED_KEY]"
            assert answer.headers["x-routeiq-redactions"] == "2"
            assert answer.headers["x-ratelimit-limit"] == "20"
            assert answer.headers["x-routeiq-deployment"] in ("mock-small", "mock-large")  # the routing decision
            assert answer.headers["x-routeiq-strategy"] == "contextual_bandit"
            assert int(answer.headers["x-token-budget-remaining"]) == 5000
            streamed = client.post("/v1/chat/completions", json={**body, "stream": True}, headers=KEY)
            assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
            blocked = client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "password: hunter2"}]}, headers=KEY)
            assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "pii_forbidden"
            feedback = client.post("/v1/feedback", json={"request_id": answer.headers["x-request-id"], "score": 1.0}, headers=KEY)
            assert feedback.status_code == 200

            info = client.get("/key/info", params={"key": key}, headers=MASTER).json()["info"]
            assert eventually(lambda: float(client.get("/key/info", params={"key": key}, headers=MASTER).json()["info"]["spend"]) > 0)
            assert info["max_budget"] == 0.5
            logs = client.get("/spend/logs", params={"api_key": key}, headers=MASTER).json()
            assert logs and {row["model_group"] for row in logs} == {"routeiq-mock"}

            # A fresh key: 20 a minute, and a new x-api-key per request does not escape it.
            greedy = new_key(client)
            statuses = [client.get("/v1/models", headers={"authorization": f"Bearer {greedy}", "x-api-key": f"me-{i}"}).status_code for i in range(22)]
            assert statuses[:20] == [200] * 20 and statuses[20:] == [429, 429]

            assert client.post("/key/block", json={"key": key}, headers=MASTER).status_code == 200
            blocked_key = client.get("/v1/models", headers=KEY)
            assert blocked_key.status_code == 401 and blocked_key.json()["error"]["code"] == "key_blocked"
            deleted = client.post("/key/delete", json={"keys": [key, greedy]}, headers=MASTER)
            assert deleted.status_code == 200 and len(deleted.json()["deleted_keys"]) == 2
            assert client.get("/v1/models", headers=KEY).json()["error"]["code"] == "invalid_api_key"

            metrics = client.get("/metrics").text
            assert "routeiq_plugin_request_counter_requests_total" in metrics

            # The console: the README's demo admin key logs in at /ui.
            form = client.get("/ui/login")
            token = re.search(r'name="login_token" value="([^"]+)"', form.text)
            assert form.status_code == 200 and token is not None
            login = client.post("/ui/login", data={"login_token": token.group(1), "key": DEMO_ADMIN_KEY})
            assert login.status_code == 303 and login.headers["location"] == "/ui/"
            assert "rate_limiter" in client.get("/ui/plugins").text
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


def test_readme_quick_start_matches_demo_yaml() -> None:
    # The walk-through's curls are run against the demo by test_demo_serve_shows_every_example;
    # this keeps the README's constants those of demo.yaml.
    import yaml

    demo = yaml.safe_load((ROOT / "demo.yaml").read_text())
    readme = (ROOT / "README.md").read_text()
    assert demo["keys"]["enabled"] is True
    assert f"M='authorization: Bearer {demo['keys']['master_key']}'" in readme
    assert MASTER["authorization"] == f"Bearer {demo['keys']['master_key']}"
    plugins = {p["name"]: p.get("config", {}) for p in demo["plugins"]}
    assert f"ext_auth guards {plugins['ext_auth']['paths']}:" in readme
    assert f"rate_limiter: {plugins['rate_limiter']['limit']} requests a minute per virtual key" in readme
    assert "header" not in plugins["rate_limiter"] and "header" not in plugins["token_budget"]  # no spoofable keying in the demo
    # The console login the README gives: its keys are demo.yaml's admin keys, with those roles.
    admin_keys = {k["sha256"]: k["role"] for k in demo["admin"]["keys"]}
    assert admin_keys == {hash_key(DEMO_ADMIN_KEY): "admin", hash_key(DEMO_VIEWER_KEY): "viewer"}
    assert f"`{DEMO_ADMIN_KEY}`" in readme and f"`{DEMO_VIEWER_KEY}`" in readme and "http://127.0.0.1:8080/ui" in readme
