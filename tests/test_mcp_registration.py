"""MCP tools registered at run time through the admin API (one gateway, real uvicorn, the
official client SDK): upload, listed and callable at once; refused uploads (base64, not
Wasm, pin, policy, manifest schema, settings) answered with their reason and never
listed; hot swap; unregistration (a config-file tool serves again); role checks; a
registration survives a restart; and with a replica store that cannot be written, the
upload is refused with 503 and nothing changes."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from routeiq.admin.auth import hash_key
from support import free_port, with_manifest
from test_mcp import HOSTILE, UNIT, policy_for, session

ADMIN_KEY, OPS_KEY = "riq_admin_key_for_tool_registration", "riq_ops_key_for_tool_registration"
KEYS = [{"name": "root", "sha256": hash_key(ADMIN_KEY), "role": "admin"}, {"name": "ops", "sha256": hash_key(OPS_KEY), "role": "operator"}]
AS_ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def upload(wasm: bytes, **settings: Any) -> dict[str, Any]:
    return {"module": base64.b64encode(wasm).decode(), "allow": {"anyone": True}, **settings}


def put(base: str, name: str, body: Any, headers: dict[str, str] = AS_ADMIN) -> httpx.Response:
    return httpx.put(f"{base}/admin/tools/{name}", json=body, headers=headers, trust_env=False, timeout=60)


def listed(base: str) -> list[str]:
    return sorted(t["name"] for t in httpx.get(base + "/mcp/tools", trust_env=False).json()["tools"])


def start(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path, tools: list[dict[str, Any]] | None = None, **top: Any) -> tuple[Any, str]:
    policy = policy_for("conv", "unit_convert", sealed={"sha256": "0" * 64})
    app = make_app([], policy=policy, mcp={"tools": tools or []}, admin={"state_dir": str(tmp_path / "state"), "keys": KEYS}, **top)
    return app, live(app)


def test_register_call_swap_and_unregister_a_tool(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path) -> None:
    _, base = start(make_app, live, tmp_path)
    assert listed(base) == []
    done = put(base, "conv", upload(UNIT.read_bytes(), limits={"timeout_ms": 200}))
    assert done.status_code == 200, done.text
    assert done.json()["sha256"] == hashlib.sha256(UNIT.read_bytes()).hexdigest()
    assert listed(base) == ["conv"]  # listed at once, on GET /mcp/tools and tools/list alike

    async def use(s: Any) -> Any:
        tools = (await s.list_tools()).tools
        return tools, await s.call_tool("conv", {"value": 1, "from": "mi", "to": "km"})

    tools, answer = session(base, use)
    assert [t.name for t in tools] == ["conv"] and tools[0].input_schema["required"] == ["value", "from", "to"]
    assert answer.structured_content["value"] == pytest.approx(1.609344)
    described = httpx.get(base + "/admin/tools", headers=AS_ADMIN, trust_env=False).json()
    (entry,) = described["tools"]
    assert entry["origin"] == "admin" and entry["limits"]["timeout_ms"] == 200 and entry["allow"]["anyone"]

    # Hot swap: the same name, another module; the listing follows.
    swapped = put(base, "conv", upload(HOSTILE.read_bytes()))
    assert swapped.status_code == 200, swapped.text
    echoed = session(base, lambda s: s.call_tool("conv", {"mode": "echo"}))
    assert echoed.structured_content == {"status": 0}
    assert "mode" in httpx.get(base + "/mcp/tools", trust_env=False).json()["tools"][0]["inputSchema"]["properties"]

    gone = httpx.delete(base + "/admin/tools/conv", headers=AS_ADMIN, trust_env=False)
    assert gone.status_code == 200 and gone.json()["serving"] == "none"
    assert listed(base) == []
    assert httpx.delete(base + "/admin/tools/conv", headers=AS_ADMIN, trust_env=False).status_code == 404


def test_refused_uploads_say_why_and_are_never_listed(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path) -> None:
    _, base = start(make_app, live, tmp_path)
    unit = UNIT.read_bytes()
    broken_schema = with_manifest(unit, {"name": "conv", "input_schema": {"type": "object", "properties": {"value": {"type": 5}}}})
    cases = [
        ({"module": "not base64!"}, "module: not valid base64"),
        (upload(b"\0asm but not really"), "is not a valid WebAssembly module"),
        (upload(unit, sha256="0" * 64), "sha256 mismatch"),
        (upload(broken_schema), "not a valid JSON Schema: input_schema.properties.value.type"),
        (upload(unit, limits={"fuel": "lots"}), "limits.fuel: Input should be a valid integer"),
        (upload(unit, colour="blue"), "colour: unknown setting"),
        (upload(unit, allow={"admin_role": "root"}), "allow.admin_role: Input should be 'viewer', 'operator' or 'admin'"),
    ]
    for body, reason in cases:
        refused = put(base, "conv", body)
        assert refused.status_code == 400 and reason in refused.json()["error"]["message"], (reason, refused.text)
    # The policy decides, as for configured tools: a capability it does not grant, or a pin the module breaks.
    greedy = with_manifest(unit, {"name": "stranger", "capabilities": ["shared_kv"], "input_schema": {"type": "object"}})
    no_entry = put(base, "stranger", upload(greedy))
    assert no_entry.status_code == 400 and "needs shared_kv" in no_entry.json()["error"]["message"] and "the policy has no entry for it" in no_entry.json()["error"]["message"]
    sealed = put(base, "sealed", upload(unit))
    assert sealed.status_code == 400 and "does not match the policy's pin" in sealed.json()["error"]["message"]
    bad_name = put(base, "no spaces", upload(unit))
    assert bad_name.status_code == 400 and "name: String should match pattern" in bad_name.json()["error"]["message"]
    assert listed(base) == [] and httpx.get(base + "/admin/tools", headers=AS_ADMIN, trust_env=False).json()["tools"] == []


def test_roles_are_checked_like_other_admin_writes(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path) -> None:
    _, base = start(make_app, live, tmp_path)
    body = upload(UNIT.read_bytes())
    assert put(base, "conv", body, headers={}).status_code == 401
    assert put(base, "conv", body, headers={"authorization": f"Bearer {OPS_KEY}"}).status_code == 403  # modules need admin
    assert httpx.get(base + "/admin/tools", headers={"authorization": f"Bearer {OPS_KEY}"}, trust_env=False).status_code == 200
    assert httpx.delete(base + "/admin/tools/conv", headers={"authorization": f"Bearer {OPS_KEY}"}, trust_env=False).status_code == 403
    assert listed(base) == []
    described = httpx.get(base + "/admin/openapi.json", headers=AS_ADMIN, trust_env=False).json()["paths"]
    assert set(described["/admin/tools/{name}"]) == {"put", "delete"} and "get" in described["/admin/tools"]


def test_a_registration_overrides_a_config_tool_until_unregistered_and_survives_a_restart(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path) -> None:
    file_tool = [{"name": "unit_convert", "wasm": str(UNIT), "allow": {"anyone": True}}]
    app, base = start(make_app, live, tmp_path, file_tool)
    assert put(base, "unit_convert", upload(HOSTILE.read_bytes())).status_code == 200
    assert put(base, "conv", upload(UNIT.read_bytes())).status_code == 200
    assert session(base, lambda s: s.call_tool("unit_convert", {"mode": "echo"})).structured_content == {"status": 0}

    # A restart (a new app on the same state dir) serves both registrations.
    _, again = start(make_app, live, tmp_path, file_tool)
    assert listed(again) == ["conv", "unit_convert"]
    assert session(again, lambda s: s.call_tool("unit_convert", {"mode": "echo"})).structured_content == {"status": 0}
    back = httpx.delete(again + "/admin/tools/unit_convert", headers=AS_ADMIN, trust_env=False)
    assert back.status_code == 200 and back.json()["serving"] == "config_file"
    answer = session(again, lambda s: s.call_tool("unit_convert", {"value": 1, "from": "km", "to": "m"}))
    assert answer.structured_content["value"] == 1000.0  # the file's module again
    origins = {t["name"]: t["origin"] for t in httpx.get(again + "/admin/tools", headers=AS_ADMIN, trust_env=False).json()["tools"]}
    assert origins == {"conv": "admin", "unit_convert": "config_file"}
    missing = httpx.delete(again + "/admin/tools/unit_convert", headers=AS_ADMIN, trust_env=False)
    assert missing.status_code == 404 and "comes from the config file" in missing.json()["error"]["message"]


def test_an_upload_the_replica_store_cannot_record_is_refused_with_503(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # no Redis there: the record cannot be written
    _, base = start(make_app, live, tmp_path, kv={"backend": "redis", "url": nobody, "timeout_s": 0.2})
    refused = put(base, "conv", upload(UNIT.read_bytes()))
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "state_not_stored"
    assert "nothing was changed" in refused.json()["error"]["message"]
    assert listed(base) == []
    saved = tmp_path / "state" / "plugins" / "tool:conv.json"
    assert not saved.exists() or json.loads(saved.read_text()) == {}  # nothing kept for a restart either
