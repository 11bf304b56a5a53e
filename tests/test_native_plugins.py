"""Native Python plugins (the trusted tier): allow-listed before import, request and
response hooks, LLM hooks, lifecycle and health."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from routeiq.app import PluginStartupError
from test_llm import deployment

PLUGIN = '''
from pathlib import Path
from routeiq.native.plugin import GatewayPlugin, NativeResponse

Path(__file__).with_suffix(".imported").write_text("yes")  # proves whether it was imported


class Audit(GatewayPlugin):
    name = "audit"
    version = "1.2.0"

    def __init__(self, config):
        super().__init__(config)
        self.events = []

    async def startup(self):
        self.events.append("startup")

    async def shutdown(self):
        self.events.append("shutdown")

    async def on_request(self, request):
        if request.path == "/forbidden":
            return NativeResponse(451, "not here", {"x-native": "blocked"})
        request.headers["x-native"] = self.config.get("tag", "yes")

    async def on_response(self, request, response):
        response.headers["x-native-seen"] = str(response.status)

    async def on_llm_pre_call(self, request_id, body):
        return {**body, "messages": [{"role": "user", "content": "rewritten natively"}]}

    async def on_llm_success(self, request_id, outcome):
        self.events.append(("success", outcome["deployment"]))
'''


def write_plugin(tmp_path: Path) -> Path:
    path = tmp_path / "audit_plugin.py"
    path.write_text(PLUGIN)
    return path


def native_entry(path: Path, **extra: object) -> dict[str, object]:
    return {"name": "audit", "python": f"{path}:Audit", "config": {"tag": "native"}, **extra}


def test_native_hooks_on_http_and_llm_traffic(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_plugin(tmp_path)
    policy = {"plugins": {"audit": {"native": True, "module": f"{path}:Audit"}}}
    app = make_app([native_entry(path)], policy=policy, model_list=[deployment("a")])
    audit = app.state.gateway.native[0][0]
    with TestClient(app) as client:
        echoed = client.get("/echo")
        assert ["x-native", "native"] in echoed.json()["headers"]
        assert echoed.headers["x-native-seen"] == "200"
        blocked = client.get("/forbidden")
        assert blocked.status_code == 451 and blocked.text == "not here"
        answer = client.post("/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.json()["choices"][0]["message"]["content"] == "You said: rewritten natively"
        health = {p["name"]: p for p in client.get("/health").json()["plugins"]}
        assert health["audit"] == {"name": "audit", "kind": "native", "state": "ready", "version": "1.2.0"}
    assert audit.events == ["startup", ("success", "a"), "shutdown"]


def test_native_plugins_must_be_allowed_before_import(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_plugin(tmp_path)
    with pytest.raises(PluginStartupError, match="native: true"):
        make_app([native_entry(path)], policy={"plugins": {}})
    with pytest.raises(PluginStartupError, match="allows module"):
        make_app([native_entry(path)], policy={"plugins": {"audit": {"native": True, "module": "other:Thing"}}})
    assert not path.with_suffix(".imported").exists()  # never imported


def test_config_needs_exactly_one_kind(tmp_path: Path) -> None:
    from routeiq.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="exactly one of `wasm`"):
        parse_config({"plugins": [{"name": "x", "wasm": "a.wasm", "python": "m:C"}]}, "gw.yaml", tmp_path / "gw.yaml")
