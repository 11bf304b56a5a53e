"""Service plugins (Envoy's bootstrap WasmService: a root context only, never on the
request path) and shared data / queues scoped by vm_id as in Envoy, in memory and on
Redis, through a real uvicorn."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import wasmtime

from routeiq.admin.auth import hash_key
from routeiq.config import ConfigError, parse_config
from support import eventually, grant_everything

ADMIN_KEY = "view-key-0123456789"
GO_SDK = Path(__file__).resolve().parents[2] / "shared" / "data" / "proxy-wasm-sdk" / "go-sdk-44c7d58"

# A root-only module whose every tick traps; it counts the contexts it is asked to create
# (the root's only, if it never sees an HTTP context) in a shared-data key.
TRAPPING_TICKER = """
(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $contexts (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $contexts (i32.add (global.get $contexts) (i32.const 1)))
    (if (i32.ne (local.get 1) (i32.const 0)) (then unreachable)))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick (i32.const 20)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32) unreachable))
"""


def go(name: str, module: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "wasm": str(GO_SDK / f"{module or name}.wasm"), **extra}


@pytest.fixture(params=["memory", "redis"])
def kv_backend(request, redis_url: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    if request.param == "memory":
        return {"backend": "memory"}
    return {"backend": "redis", "url": redis_url, "prefix": f"svc{time.monotonic_ns()}"}


@pytest.fixture
def ticker(tmp_path: Path) -> Path:
    path = tmp_path / "ticker.wasm"
    path.write_bytes(wasmtime.wat2wasm(TRAPPING_TICKER))
    return path


# --------------------------------------------------------------------- services
def test_a_service_whose_tick_traps_is_restarted(make_app, live, ticker: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    admin = {"state_dir": str(tmp_path / "state"), "keys": [{"name": "ops", "sha256": hash_key(ADMIN_KEY), "role": "viewer"}]}
    app = make_app([], services=[{"name": "ticker", "wasm": str(ticker)}], policy=grant_everything(["ticker"]), admin=admin)
    base = live(app)
    service = app.state.gateway.plugin_set.plugin("ticker")
    # Traps on every tick; restarted after each (no request comes to do it).
    assert eventually(lambda: service.stats.vm_starts >= 3, timeout=10)
    assert service.stats.traps_by_kind and service.stats.last_error
    # Requests never reach it: an HTTP context would trap its proxy_on_context_create.
    assert httpx.get(base + "/echo", timeout=30).status_code == 200
    health = httpx.get(base + "/health", timeout=30).json()
    assert [(p["name"], p["kind"]) for p in health["plugins"]] == [("ticker", "service")]
    assert 'routeiq_plugin_vm_starts_total{plugin="ticker"}' in httpx.get(base + "/metrics", timeout=30).text
    listed = httpx.get(base + "/admin/plugins", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30).json()["plugins"]
    assert [(p["name"], p["kind"]) for p in listed] == [("ticker", "service")]


def test_a_service_that_keeps_trapping_is_quarantined_then_probed(make_app, live, ticker: Path) -> None:  # type: ignore[no-untyped-def]
    entry = {"name": "ticker", "wasm": str(ticker), "quarantine": {"max_traps": 2, "window_s": 60, "cooldown_s": 0.2}}
    app = make_app([], services=[entry], policy=grant_everything(["ticker"]))
    live(app)
    service = app.state.gateway.plugin_set.plugin("ticker")
    assert eventually(lambda: service.stats.quarantines >= 1, timeout=10)
    starts = service.stats.vm_starts
    # No request probes a service: after the cool-down a timer starts the probe VM, whose
    # tick traps again, so it is quarantined again.
    assert eventually(lambda: service.stats.vm_starts > starts and service.stats.quarantines >= 2, timeout=10)
    assert service.describe()["kind"] == "service"


def test_service_names_are_unique_across_plugins_and_services(tmp_path: Path) -> None:
    module = str(GO_SDK / "helloworld.wasm")
    with pytest.raises(ConfigError, match="used twice"):
        parse_config({"plugins": [{"name": "a", "wasm": module}], "services": [{"name": "a", "wasm": module}]})
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_config({"services": [{"name": "a", "wasm": module, "fail_open": True}]})  # a filter's setting


def test_a_vm_id_cannot_take_over_another_plugins_namespace() -> None:
    module = str(GO_SDK / "helloworld.wasm")
    with pytest.raises(ConfigError, match="vm_id 'victim' is the name of another plugin"):
        parse_config({"plugins": [{"name": "victim", "wasm": module}, {"name": "thief", "wasm": module, "vm_id": "victim"}]})
    parse_config({"plugins": [{"name": "owner", "wasm": module, "vm_id": "owner"}, {"name": "peer", "wasm": module, "vm_id": "owner"}]})


# ---------------------------------------------------------- scoping by vm_id
@pytest.mark.parametrize(("vm_ids", "values"), [(("vm", "vm"), (1, 2)), (("a", "b"), (1, 1)), (("", ""), (1, 1))])
def test_go_shared_data_is_shared_by_vm_id(make_app, live, kv_backend: dict[str, Any], vm_ids: tuple[str, str], values: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    # Two instances of the Go shared_data example: each increments "shared_data_key" per
    # request. With one vm_id they count one counter; with two (or none: own names) two.
    plugins = [go("first", "shared_data", vm_id=vm_ids[0]), go("second", "shared_data", vm_id=vm_ids[1])]
    app = make_app(plugins, kv=kv_backend)
    base = live(app)
    assert httpx.get(base + "/echo", timeout=30).status_code == 200
    logs = app.state.gateway.logs
    assert [m for m in logs.messages("first") if m.startswith("shared value")] == [f"shared value: {values[0]}"]
    assert [m for m in logs.messages("second") if m.startswith("shared value")] == [f"shared value: {values[1]}"]
    if kv_backend["backend"] == "redis":  # the key lives under the VM's namespace
        namespace = vm_ids[0] or "first"
        stored = redis.Redis.from_url(kv_backend["url"]).hget(f"{kv_backend['prefix']}:kv:{namespace}:shared_data_key", "v")
        assert stored is not None and int.from_bytes(stored, "little") == values[1 if vm_ids[0] == vm_ids[1] and vm_ids[0] else 0]


def test_go_shared_queue_between_vm_ids(make_app, live, kv_backend: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    # The receiver service registers "http_request_headers" in VM "receiver"; the sender
    # (VM "sender") resolves ("receiver", name): the policy grants it that VM's namespace.
    policy = grant_everything(["receiver"])
    policy["plugins"]["sender"] = {**grant_everything(["sender"])["plugins"]["sender"], "kv": {"write": ["receiver"]}}
    services = [go("receiver", "shared_queue_receiver", vm_id="receiver", config="http_request_headers")]
    app = make_app([go("sender", "shared_queue_sender", vm_id="sender", config="http")], services=services, policy=policy, kv=kv_backend)
    base = live(app)
    assert httpx.get(base + "/echo", headers={"x-scoped": kv_backend["backend"]}, timeout=30).status_code == 200
    wanted = f'{{"key": "x-scoped","value": "{kv_backend["backend"]}"}}'
    logs = app.state.gateway.logs
    assert eventually(lambda: any(m.endswith(wanted) and "dequeued data from http_request_headers(queueID=" in m for m in logs.messages("receiver")), timeout=10)
    # The response queue was never registered: the sender logs the resolve failure.
    assert any("error resolving queue id" in m for m in logs.messages("sender"))


def test_go_shared_queue_across_gateways_sharing_redis(make_app, live, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    # Two gateways (as two workers or replicas would be) on one Redis: the receiver service
    # runs in one, the sender filter in the other; the queue is found as ("receiver",
    # name) through Redis and readiness crosses by pub/sub.
    kv = {"backend": "redis", "url": redis_url, "prefix": f"x{time.monotonic_ns()}"}
    services = [go("receiver", "shared_queue_receiver", vm_id="receiver", config="http_request_headers")]
    collector = make_app([], services=services, policy=grant_everything(["receiver"]), kv=kv)
    live(collector)
    policy = {"plugins": {"sender": {**grant_everything(["sender"])["plugins"]["sender"], "kv": {"write": ["receiver"]}}}}
    edge = live(make_app([go("sender", "shared_queue_sender", config="http")], policy=policy, kv=kv))
    assert httpx.get(edge + "/echo", headers={"x-across": "gateways"}, timeout=30).status_code == 200
    wanted = '{"key": "x-across","value": "gateways"}'
    assert eventually(lambda: any(m.endswith(wanted) for m in collector.state.gateway.logs.messages("receiver")), timeout=10)
