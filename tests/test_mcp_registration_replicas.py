"""Runtime tool registration across workers and replicas: two `routeiq serve --workers 2`
processes on one real redis-server. A tool registered on one worker is listed by every
worker of both replicas and callable through /mcp on the other replica; unregistered on
the other, it is gone everywhere; a bad upload is refused with its reason and reaches no
node; a replica started afterwards serves the registration from the record."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import yaml

from routeiq.admin.auth import hash_key
from support import free_port, redis_server
from test_mcp import UNIT, session
from test_replicas import KEY, WORKERS, Replica, replicas


def write_config(tmp_path: Path, name: str, redis_url: str, conv_policy: dict[str, Any] | None = None) -> Path:
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "workers": WORKERS},
        "kv": {"backend": "redis", "url": redis_url, "prefix": "rq", "timeout_s": 0.5},
        "replicas": {"poll_s": 0.5, "node_ttl_s": 3},
        "admin": {"state_dir": str(tmp_path / f"state-{name}"), "keys": [{"name": "ops", "sha256": hash_key(KEY), "role": "admin"}]},
        "policy": {"tools": {"conv": conv_policy or {"unpinned": True}}},
        "runtime": {"cache_dir": str(tmp_path / "cache")},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def names(body: dict[str, Any]) -> list[str]:
    return sorted(t["name"] for t in body["tools"] if t.get("state") != "refused_here")


def test_a_tool_registered_on_one_worker_serves_on_every_worker_of_every_replica(tmp_path: Path) -> None:
    module = base64.b64encode(UNIT.read_bytes()).decode()
    with redis_server(free_port()) as url:
        with replicas(write_config(tmp_path, "a", url), write_config(tmp_path, "b", url)) as (a, b):
            for r in (a, b):
                r.per_worker("/admin/tools", lambda body: names(body) == [])

            bad = a.send("PUT", "/tools/conv", json={"module": base64.b64encode(b"not wasm").decode(), "allow": {"anyone": True}})
            assert bad.status_code == 400 and "is not a valid WebAssembly module" in bad.json()["error"]["message"]

            done = a.send("PUT", "/tools/conv", json={"module": module, "allow": {"anyone": True}, "description": "lengths and masses"})
            assert done.status_code == 200, done.text
            for r in (a, b):
                seen = r.per_worker("/admin/tools", lambda body: names(body) == ["conv"])
                assert len(seen) == WORKERS
            listing = httpx.get(b.url + "/mcp/tools", trust_env=False, headers={"connection": "close"}).json()
            assert [(t["name"], t["description"]) for t in listing["tools"]] == [("conv", "lengths and masses")]
            answer = session(b.url, lambda s: s.call_tool("conv", {"value": 2, "from": "km", "to": "m"}))
            assert answer.structured_content["value"] == 2000.0

            # A replica that starts now catches up from the record before it serves; one whose
            # policy pins another module refuses it and says so (not converged).
            with replicas(write_config(tmp_path, "c", url), write_config(tmp_path, "d", url, {"sha256": "0" * 64})) as (c, d):
                c.per_worker("/admin/tools", lambda body: names(body) == ["conv"])
                refused = d.per_worker("/admin/tools", lambda body: [t.get("state") for t in body["tools"]] == ["refused_here"])
                assert all("does not match the policy's pin" in body["tools"][0]["error"] for body in refused.values())
                health = d.per_worker("/health", lambda body: not body["replicas"]["converged"])
                assert all("tool conv" in body["replicas"]["errors"]["tools"] for body in health.values())

            gone = b.send("DELETE", "/tools/conv")
            assert gone.status_code == 200, gone.text
            for r in (a, b):
                r.per_worker("/admin/tools", lambda body: names(body) == [])
            assert httpx.get(a.url + "/mcp/tools", trust_env=False, headers={"connection": "close"}).json()["tools"] == []
            view = a.get("/admin/nodes").json()
            assert not any(n.get("errors") for n in view["nodes"]), json.dumps(view)[:2000]
