"""Virtual keys through a real uvicorn with the official SDKs: the key lifecycle over the
LiteLLM-shaped API, limits and budgets hit and reset, spend charged exactly once across
retries and fallbacks, teams, the consumer as plugins see it, and a key database that is
down failing closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import anthropic
import httpx
import openai
import pytest

from routeiq.abi.proxy_wasm import Status
from support import eventually, free_port, plugin, probe_props

MASTER = "sk-master-0123456789"
M = {"authorization": f"Bearer {MASTER}"}
HELLO = [{"role": "user", "content": "hi there friend"}]  # the mock answers 3 prompt + 5 completion tokens


def deployment(name: str, model: str, price: float = 1.0) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": f"openai/{model}", "api_base": "embedded"}, "model_info": {"cost_per_1k_tokens": price}}


@pytest.fixture
def gateway(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path) -> Callable[..., tuple[Any, str]]:
    def start(plugins: list[dict[str, Any]] | None = None, **top: Any) -> tuple[Any, str]:
        keys = {"enabled": True, "master_key": MASTER, **top.pop("keys", {})}
        top.setdefault("model_list", [deployment("chat", "mock"), deployment("other", "mock")])
        app = make_app(plugins or [], keys=keys, admin={"state_dir": str(tmp_path / "state")}, **top)
        return app, live(app)

    return start


def sdk(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=30)


def admin(base: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, base + path, headers=M, timeout=30, trust_env=False, **kw)


def spend_of(base: str, key: str) -> float:
    return float(admin(base, "GET", "/key/info", params={"key": key}).json()["info"]["spend"])


def test_key_lifecycle_with_the_openai_and_anthropic_sdks(gateway: Any) -> None:
    _, base = gateway()
    made = admin(base, "POST", "/key/generate", json={"key_alias": "alice", "models": ["chat"], "metadata": {"owner": "alice@example.com"}})
    assert made.status_code == 200, made.text
    key = made.json()["key"]
    assert key.startswith("sk-") and made.json()["key_name"] == f"sk-...{key[-4:]}"

    assert sdk(base, key).chat.completions.create(model="chat", messages=HELLO).usage.total_tokens == 8
    missing = httpx.post(base + "/v1/chat/completions", json={"model": "chat", "messages": HELLO}, trust_env=False)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(openai.AuthenticationError) as unknown:
        sdk(base, "sk-not-a-key").chat.completions.create(model="chat", messages=HELLO)
    assert unknown.value.code == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk(base, key).chat.completions.create(model="other", messages=HELLO)  # not in the key's models
    assert denied.value.code == "model_not_allowed"
    # Anthropic's SDK sends x-api-key; its errors come in Anthropic's envelope.
    claude = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
    assert claude.messages.create(model="chat", max_tokens=16, messages=HELLO).content[0].type == "text"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=base, api_key="sk-wrong", max_retries=0).messages.create(model="chat", max_tokens=16, messages=HELLO)

    # Spend is charged (both answered requests) and shown by key, alias or token.
    assert eventually(lambda: spend_of(base, "alice") >= 0.016 - 1e-9)
    info = admin(base, "GET", "/key/info", params={"key": key}).json()
    assert info["info"]["key_alias"] == "alice" and info["info"]["metadata"] == {"owner": "alice@example.com"} and "key" not in info["info"]

    assert admin(base, "POST", "/key/block", json={"key": "alice"}).json()["blocked"] is True
    with pytest.raises(openai.AuthenticationError) as blocked:
        sdk(base, key).chat.completions.create(model="chat", messages=HELLO)
    assert blocked.value.code == "key_blocked"
    admin(base, "POST", "/key/unblock", json={"key": "alice"})
    sdk(base, key).chat.completions.create(model="chat", messages=HELLO)

    rotated = admin(base, "POST", "/key/regenerate", json={"key": key}).json()
    with pytest.raises(openai.AuthenticationError):
        sdk(base, key).chat.completions.create(model="chat", messages=HELLO)
    sdk(base, rotated["key"]).chat.completions.create(model="chat", messages=HELLO)
    assert rotated["key_alias"] == "alice" and rotated["models"] == ["chat"]  # same settings, same spend
    assert eventually(lambda: spend_of(base, "alice") >= 0.032 - 1e-9)

    assert admin(base, "POST", "/key/delete", json={"keys": ["alice"]}).json()["deleted"] == 1
    with pytest.raises(openai.AuthenticationError):
        sdk(base, rotated["key"]).chat.completions.create(model="chat", messages=HELLO)
    assert admin(base, "GET", "/key/info", params={"key": "alice"}).status_code == 404


def test_key_management_needs_the_master_key_and_names_bad_fields(gateway: Any) -> None:
    _, base = gateway()
    assert httpx.post(base + "/key/generate", json={}, headers={"authorization": "Bearer sk-nope"}, trust_env=False).status_code == 401
    refused = admin(base, "POST", "/key/generate", json={"max_budget": "lots"})
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "max_budget must be a number >= 0"
    refused = admin(base, "POST", "/key/generate", json={"budget": 5})
    assert refused.status_code == 400 and refused.json()["error"]["message"].startswith("unknown field(s) budget")
    assert admin(base, "POST", "/key/generate", json={"team_id": "nope"}).json()["error"]["message"] == "team_id 'nope': no such team"
    assert admin(base, "POST", "/key/generate", content=b"{not json").json()["error"]["code"] == "invalid_json"
    # The master key calls any model, without limits.
    assert sdk(base, MASTER).chat.completions.create(model="other", messages=HELLO).choices


def test_rpm_tpm_and_budget_limits_refuse_with_429_and_budgets_reset(gateway: Any) -> None:
    _, base = gateway()
    rpm = admin(base, "POST", "/key/generate", json={"rpm_limit": 2}).json()["key"]
    client = sdk(base, rpm)
    client.chat.completions.create(model="chat", messages=HELLO)
    client.chat.completions.create(model="chat", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="chat", messages=HELLO)
    assert limited.value.code == "rpm_limit_exceeded" and 1 <= int(limited.value.response.headers["retry-after"]) <= 60

    tpm = sdk(base, admin(base, "POST", "/key/generate", json={"tpm_limit": 10}).json()["key"])
    tpm.chat.completions.create(model="chat", messages=HELLO)  # 8 tokens
    tpm.chat.completions.create(model="chat", messages=HELLO)  # 16: over, counted once settled
    with pytest.raises(openai.RateLimitError) as over_tokens:
        eventually(lambda: tpm.chat.completions.create(model="chat", messages=HELLO) and False, timeout=2)
    assert over_tokens.value.code == "tpm_limit_exceeded"

    # A budget of 2 requests (0.008 each), reset every 2 s: the third is refused until then.
    budget = admin(base, "POST", "/key/generate", json={"max_budget": 0.016, "budget_duration": "2s"}).json()["key"]
    paid = sdk(base, budget)
    paid.chat.completions.create(model="chat", messages=HELLO)
    paid.chat.completions.create(model="chat", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as broke:
        paid.chat.completions.create(model="chat", messages=HELLO)
    assert broke.value.code == "budget_exceeded"

    def after_reset() -> bool:
        try:
            paid.chat.completions.create(model="chat", messages=HELLO)
            return True
        except openai.RateLimitError:
            return False

    assert eventually(after_reset, timeout=6)


def test_teams_carry_models_and_budgets_for_their_keys(gateway: Any) -> None:
    _, base = gateway()
    team = admin(base, "POST", "/team/new", json={"team_id": "research", "team_alias": "Research", "models": ["chat"], "max_budget": 0.016})
    assert team.status_code == 200, team.text
    a = sdk(base, admin(base, "POST", "/key/generate", json={"team_id": "research"}).json()["key"])
    b = sdk(base, admin(base, "POST", "/key/generate", json={"team_id": "research"}).json()["key"])
    with pytest.raises(openai.PermissionDeniedError):
        a.chat.completions.create(model="other", messages=HELLO)  # the team's models apply to its keys
    a.chat.completions.create(model="chat", messages=HELLO)
    b.chat.completions.create(model="chat", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as broke:  # the team's budget is shared
        a.chat.completions.create(model="chat", messages=HELLO)
    assert "team research" in broke.value.message
    info = admin(base, "GET", "/team/info", params={"team_id": "research"}).json()
    assert len(info["keys"]) == 2
    assert eventually(lambda: admin(base, "GET", "/team/info", params={"team_id": "research"}).json()["team_info"]["spend"] >= 0.016 - 1e-9)
    by_team = {r["team_id"]: r for r in admin(base, "GET", "/spend/teams").json()}
    assert by_team["research"]["requests"] == 2


def test_spend_is_charged_once_per_request_across_retries_and_fallbacks(gateway: Any) -> None:
    models = [deployment("flaky", "down", 1.0), deployment("flaky", "up", 1.0), deployment("primary", "down", 1.0), deployment("backup", "up", 2.0)]
    app, base = gateway(model_list=models, mock={"models": {"down": {"failure_rate": 1.0}}}, router={"strategy": "weighted_round_robin", "retries": 2, "fallbacks": [{"primary": ["backup"]}]})
    key = admin(base, "POST", "/key/generate", json={"key_alias": "once"}).json()["key"]
    client = sdk(base, key)
    ids = []
    for model in ("flaky", "flaky", "primary"):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO)
        ids.append(raw.headers["x-request-id"])
    fell_back = raw.headers.get("x-routeiq-fallback-group")
    assert fell_back == "backup"
    stream = client.chat.completions.with_raw_response.create(model="primary", messages=HELLO, stream=True)
    ids.append(stream.headers["x-request-id"])
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)

    def logged() -> list[dict[str, Any]]:
        rows = admin(base, "GET", "/spend/logs", params={"api_key": "once"}).json()
        return rows if len(rows) >= 4 else []

    rows = eventually(logged)
    assert sorted(r["request_id"] for r in rows) == sorted(ids)  # one row per request, none per attempt
    assert {r["deployment"] for r in rows if r["model_group"] == "primary"} == {"backup#0"}
    assert all(r["prompt_tokens"] + r["completion_tokens"] == 8 for r in rows)
    # The answering deployment's price: 2 flaky at 1.0, 2 fallbacks to backup at 2.0.
    assert spend_of(base, "once") == pytest.approx(2 * 0.008 + 2 * 0.016)
    assert app.state.gateway.identity.ledger.written == 4


def test_plugins_read_the_consumer_and_cannot_forge_it(gateway: Any, guests: dict[str, Path]) -> None:
    routes = [{"name": "echo", "match": {"prefix": "/echo"}, "upstream": "embedded", "auth": True}]
    _, base = gateway([plugin("probe", guests["hostcall_probe"])], routes=routes)
    admin(base, "POST", "/team/new", json={"team_id": "ops", "team_alias": "Operations"})
    key = admin(base, "POST", "/key/generate", json={"key_alias": "probe-key", "team_id": "ops", "user_id": "u1"}).json()["key"]
    names = "routeiq.consumer.id,routeiq.consumer.team_id,routeiq.consumer.team_alias,routeiq.consumer.user_id,routeiq.consumer.key_name"
    headers = {"x-probe": "props", "x-props-phase": "response", "x-props": names, "authorization": f"Bearer {key}"}
    response = httpx.get(base + "/echo", headers=headers, trust_env=False)
    got = probe_props(response.headers["x-props"])
    assert got["routeiq.consumer.id"] == b"probe-key" and got["routeiq.consumer.team_id"] == b"ops" and got["routeiq.consumer.team_alias"] == b"Operations"
    assert got["routeiq.consumer.user_id"] == b"u1" and got["routeiq.consumer.key_name"] == f"sk-...{key[-4:]}".encode()
    # No key: the route refuses before any plugin runs.
    assert httpx.get(base + "/echo", headers={"x-probe": "props", "x-props": names}, trust_env=False).status_code == 401


def test_consumer_properties_are_not_found_without_auth_on_the_route(gateway: Any, guests: dict[str, Path]) -> None:
    routes = [{"name": "open", "match": {"prefix": "/echo"}, "upstream": "embedded", "auth": False}]
    _, base = gateway([plugin("probe", guests["hostcall_probe"])], routes=routes)
    response = httpx.get(base + "/echo", headers={"x-probe": "props", "x-props-phase": "response", "x-props": "routeiq.consumer.id"}, trust_env=False)
    assert probe_props(response.headers["x-props"])["routeiq.consumer.id"] == "!" + str(Status.NOT_FOUND)


def test_an_unreachable_key_database_fails_closed(gateway: Any) -> None:
    dead = f"postgresql://routeiq@127.0.0.1:{free_port()}/routeiq"
    _, base = gateway(keys={"database": dead, "database_timeout_s": 0.5})
    with pytest.raises(openai.InternalServerError) as down:
        sdk(base, "sk-some-key-that-may-exist").chat.completions.create(model="chat", messages=HELLO)
    assert down.value.status_code == 503 and down.value.code == "auth_unavailable"
    assert httpx.post(base + "/v1/chat/completions", json={"model": "chat", "messages": HELLO}, trust_env=False).status_code == 401  # still no way in without a key
    assert sdk(base, MASTER).chat.completions.create(model="chat", messages=HELLO).choices  # the master key needs no database
    assert admin(base, "POST", "/key/generate", json={}).status_code == 503


def test_shared_data_scoped_per_consumer_by_policy(gateway: Any, guests: dict[str, Path]) -> None:
    from support import grant_everything

    routes = [{"name": "probe", "match": {"prefix": "/probe"}, "upstream": "embedded", "auth": True}]
    policy = grant_everything(["probe"], kv={"per_consumer": True})
    app, base = gateway([plugin("probe", guests["hostcall_probe"])], routes=routes, policy=policy)
    alice = admin(base, "POST", "/key/generate", json={"key_alias": "alice"}).json()["key"]
    bob = admin(base, "POST", "/key/generate", json={"key_alias": "bob"}).json()["key"]

    def probe_kv(key: str, **headers: str) -> dict[str, str]:
        response = httpx.get(base + "/probe", headers={"x-probe": "kv", "authorization": f"Bearer {key}", **headers}, trust_env=False)
        assert response.status_code == 200, response.text
        return {k: v for k, _, v in (line.partition("=") for line in response.text.splitlines() if line)}

    assert probe_kv(alice, **{"x-kv-put": "quota=alice-data"})["put_status"] == "0"
    assert probe_kv(alice, **{"x-kv-key": "quota"})["other"] == "alice-data"
    seen_by_bob = probe_kv(bob, **{"x-kv-key": "quota"})
    assert "other" not in seen_by_bob and seen_by_bob["other!status"] == str(Status.NOT_FOUND)  # bob's own slice
    # The same key name is two entries in the store, one per consumer.
    store = app.state.gateway.services.store
    assert store.get("probe", "@alice/quota")[0] == b"alice-data" and store.get("probe", "quota")[0] is None


def test_keys_cli_manages_the_database_a_running_gateway_uses(gateway: Any, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    import yaml

    config = tmp_path / "cli.yaml"  # the same state dir, so the same SQLite database
    config.write_text(yaml.safe_dump({"admin": {"state_dir": str(tmp_path / "state")}, "keys": {"enabled": True}}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "routeiq", *args], capture_output=True, text=True, timeout=60)

    _, base = gateway()
    made = cli("keys", "generate", "--config", str(config), "--alias", "from-cli", "--models", "chat", "--rpm", "100")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    assert sdk(base, key).chat.completions.create(model="chat", messages=HELLO).choices
    listed = json.loads(cli("keys", "list", "--config", str(config)).stdout)
    assert [k["key_alias"] for k in listed] == ["from-cli"] and "key" not in listed[0]
    assert cli("keys", "block", "--config", str(config), "from-cli").returncode == 0
    with pytest.raises(openai.AuthenticationError):  # seen by the gateway within keys.cache_ttl_s
        eventually(lambda: sdk(base, key).chat.completions.create(model="chat", messages=HELLO) and False, timeout=3)
    missing = cli("keys", "info", "--config", str(config), "nobody")
    assert missing.returncode == 1 and "no key nobody" in missing.stderr
    bad = cli("keys", "generate", "--config", str(config), "--budget-duration", "soon")
    assert bad.returncode == 2 and "budget_duration 'soon'" in bad.stderr
