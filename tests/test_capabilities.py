"""Gated host calls with their grants: shared data (memory and Redis), queues, timers,
metrics, HTTP callouts; and without them: denials, audit, SSRF, limits."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from callout_service import create_callout_service
from routeiq.abi.capabilities import MANIFEST_SECTION, Capability
from routeiq.abi.proxy_wasm import Status
from routeiq.hostcalls.component_abi import AUDIT_NAMES
from routeiq.policy.grants import CalloutRule, Grant
from routeiq.services.callout import CalloutRefused, Resolver, pin_address, plan_callout
from support import eventually, grant_everything, plugin


def lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        out[key] = value
    return out


def probe(client: TestClient, scenario: str, **headers: str) -> dict[str, str]:
    response = client.get("/probe", headers={"x-probe": scenario, **headers})
    assert response.status_code == 200, response.text
    return lines(response.text)


class Probe:
    """The conformance probe of one ABI: the Rust core module or the Python component
    (the same scenarios and output; see guest-examples/python/py_hostcall_probe)."""

    def __init__(self, kind: str, wasm: Path) -> None:
        self.kind, self.wasm = kind, wasm

    def call(self, proxy_name: str) -> str:
        """The name the audit log gives a host call of this probe's ABI."""
        return proxy_name if self.kind == "core_module" else AUDIT_NAMES[proxy_name]


@pytest.fixture(params=["core_module", "component"])
def probe_guest(request, guests: dict[str, Path], py_guests: dict[str, Path]) -> Probe:  # type: ignore[no-untyped-def]
    if request.param == "core_module":
        return Probe("core_module", guests["hostcall_probe"])
    return Probe("component", py_guests["py_hostcall_probe"])


def probe_app(make_app, probe_guest: Probe, policy_extra: dict[str, Any] | None = None, **top: Any):  # type: ignore[no-untyped-def]
    return make_app([plugin("probe", probe_guest.wasm)], policy=grant_everything(["probe"], **(policy_extra or {})), **top)


# ------------------------------------------------------------------ shared data
def check_kv_semantics(client: TestClient) -> None:
    got = probe(client, "kv")
    assert got["get_missing_status"] == str(Status.NOT_FOUND)
    assert got["create_cas_nonzero"] == "1"  # the create-if-absent token
    assert got["set_status"] == "0" and got["value"] == "v1" and int(got["cas"]) > 0
    assert got["cas_mismatch_status"] == str(Status.CAS_MISMATCH)
    assert got["cas_set_status"] == "0" and got["value2"] == "v2"


def test_shared_data_with_cas_in_memory(make_app, probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    with TestClient(probe_app(make_app, probe_guest)) as client:
        check_kv_semantics(client)
        again = probe(client, "kv")  # the key exists now
        assert again["get_missing_status"] == "0"


def test_shared_data_with_cas_in_redis(make_app, probe_guest: Probe, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    prefix = f"t{time.monotonic_ns()}"
    with TestClient(probe_app(make_app, probe_guest, kv={"backend": "redis", "url": redis_url, "prefix": prefix})) as client:
        check_kv_semantics(client)
    stored = redis.Redis.from_url(redis_url).hgetall(f"{prefix}:kv:probe:probe:k")
    assert stored[b"v"] == b"v2" and int(stored[b"c"]) >= 2


def test_namespaces_are_per_plugin_unless_shared(make_app, guests: dict[str, Path], probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    window_s = 10**9  # one window for years: a minute boundary mid-test cannot split the count
    key = f"rl:addr:testclient:{int(time.time()) // window_s}"  # no consumer: the client address (TestClient's)
    policy = {
        "plugins": {
            "rate_limiter": {"unpinned": True, "capabilities": ["shared_kv"]},
            "probe": {"unpinned": True, "capabilities": [c.value for c in Capability], "kv": {"read": ["rate_limiter"]}},
        }
    }
    app = make_app([plugin("rate_limiter", guests["rate_limiter"], config={"limit": 100, "window_s": window_s}), plugin("probe", probe_guest.wasm)], policy=policy)
    with TestClient(app) as client:
        # Same key name, own namespace: the probe does not see the limiter's counter...
        own = probe(client, "kv", **{"x-kv-key": key})
        assert own["other!status"] == str(Status.NOT_FOUND)
        # ...but reads it through the namespace the policy shares with it.
        shared = probe(client, "kv", **{"x-kv-key": f"rate_limiter/{key}"})
        assert shared["other"] == "2"  # the limiter counted both requests
        # Reading is not writing.
        denied = probe(client, "kv", **{"x-kv-put": "rate_limiter/forged=0"})
        assert denied["put_status"] == str(Status.BAD_ARGUMENT)
    audit = app.state.gateway.services.audit.recent("probe")
    assert [(r.call, r.reason) for r in audit] == [(probe_guest.call("proxy_set_shared_data"), "kv_namespace")]


def test_oversize_keys_and_values_are_refused(make_app, probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    app = probe_app(make_app, probe_guest, {"limits": {"kv_key_bytes": 64, "kv_value_bytes": 1024}})
    with TestClient(app) as client:
        assert probe(client, "kv_big", **{"x-key-len": "64", "x-value-len": "1024"})["status"] == "0"
        assert probe(client, "kv_big", **{"x-key-len": "65"})["status"] == str(Status.BAD_ARGUMENT)
        assert probe(client, "kv_big", **{"x-value-len": "1025"})["status"] == str(Status.BAD_ARGUMENT)
        assert client.get("/echo").status_code == 200
    reasons = [r.reason for r in app.state.gateway.services.audit.recent("probe")]
    assert reasons == ["kv_size", "kv_size"]


# ----------------------------------------------------------------------- queues
@pytest.fixture(params=["memory", "redis"])
def kv_backend(request, redis_url: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    if request.param == "memory":
        return {"backend": "memory"}
    return {"backend": "redis", "url": redis_url, "prefix": f"q{time.monotonic_ns()}"}


def test_shared_queues(make_app, probe_guest: Probe, kv_backend: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    with TestClient(probe_app(make_app, probe_guest, kv=kv_backend)) as client:
        got = probe(client, "queue")
    assert got["register_status"] == "0" and got["enqueue_status"] == "0"
    assert (got["first"], got["second"]) == ("m1", "m2")
    assert got["empty_status"] == str(Status.EMPTY)
    assert got["resolve_status"] == "0" and got["resolved_id"] == got["queue_id"]
    assert got["missing_status"] == str(Status.NOT_FOUND)
    assert got["bad_queue_status"] == str(Status.NOT_FOUND)


def test_timers_drive_on_tick_and_queue_readiness(make_app, probe_guest: Probe, kv_backend: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    # With Redis, readiness travels by pub/sub, as it would between workers.
    app = make_app([plugin("probe", probe_guest.wasm, config={"tick_ms": 20})], policy=grant_everything(["probe"]), kv=kv_backend)
    with TestClient(app) as client:
        ticks = eventually(lambda: int(probe(client, "timers")["ticks"]) >= 5 and probe(client, "timers"))
        assert ticks and int(ticks["queue_ready_items"]) >= 1  # on_tick enqueued, on_queue_ready dequeued
        vm = app.state.gateway.plugin("probe").current_vm()
        ticker = vm._ticker
        assert ticker is not None and not ticker.done()
    # Shutdown stopped the ticker cleanly.
    assert ticker.cancelled() or ticker.done()


# ---------------------------------------------------------------------- metrics
def test_metrics_and_prometheus_export(make_app, probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    with TestClient(probe_app(make_app, probe_guest)) as client:
        got = probe(client, "metrics")
        assert got["define_status"] == "0" and got["inc_status"] == "0" and got["value"] == "2"
        assert got["negative_status"] == str(Status.BAD_ARGUMENT)  # counters never go down
        assert got["gauge"] == "42" and got["hist_status"] == "0"
        if probe_guest.kind == "core_module":  # a WIT enum cannot carry an unknown type
            assert got["bad_type_status"] == str(Status.BAD_ARGUMENT)
        text = client.get("/metrics").text
    assert "routeiq_plugin_probe_probe_requests_total 2.0" in text
    assert "routeiq_plugin_probe_probe_gauge 42.0" in text
    assert 'routeiq_plugin_probe_probe_hist_bucket{le="5"} 1.0' in text
    assert 'routeiq_plugin_probe_probe_hist_bucket{le="2"} 0.0' in text
    assert "routeiq_plugin_probe_probe_hist_count 1.0" in text


# --------------------------------------------------------------------- callouts
@pytest.fixture
def service(live) -> str:  # type: ignore[no-untyped-def]
    return live(create_callout_service())


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def callout_app(make_app, probe_guest: Probe, rules: list[dict[str, Any]], **limits: Any):  # type: ignore[no-untyped-def]
    return probe_app(make_app, probe_guest, {"callouts": rules, "limits": limits})


def test_callout_round_trip(make_app, probe_guest: Probe, service: str) -> None:  # type: ignore[no-untyped-def]
    rules = [{"scheme": "http", "host": "127.0.0.1", "port": port_of(service), "methods": ["GET", "POST"]}]
    with TestClient(callout_app(make_app, probe_guest, rules)) as client:
        got = probe(client, "callout", **{"x-upstream": f"127.0.0.1:{port_of(service)}", "x-path": "/echo", "x-method": "POST", "x-call-body": "hi"})
    assert got["call_status"] == "0" and got["status"] == "200" and got["get_status"] == "200"
    assert got["body"] == "POST /echo hi"
    assert int(got["num_headers"]) > 1


def test_redirects_are_not_followed(make_app, probe_guest: Probe, service: str) -> None:  # type: ignore[no-untyped-def]
    rules = [{"scheme": "http", "host": "127.0.0.1", "port": port_of(service), "methods": ["GET"]}]
    with TestClient(callout_app(make_app, probe_guest, rules)) as client:
        got = probe(client, "callout", **{"x-upstream": f"127.0.0.1:{port_of(service)}", "x-path": "/redirect"})
    assert got["status"] == "302"  # handed to the plugin as is; 10.0.0.1 is never contacted


def test_oversize_callout_responses_fail_the_call(make_app, probe_guest: Probe, service: str) -> None:  # type: ignore[no-untyped-def]
    rules = [{"scheme": "http", "host": "127.0.0.1", "port": port_of(service), "methods": ["GET"]}]
    with TestClient(callout_app(make_app, probe_guest, rules, callout_max_response_bytes=10_000)) as client:
        got = probe(client, "callout", **{"x-upstream": f"127.0.0.1:{port_of(service)}", "x-path": "/big"})
    assert got["num_headers"] == "0"  # the spec's signal for a failed call


@pytest.mark.parametrize(
    "upstream, reason",
    [
        ("127.0.0.1", "ssrf"),
        ("[::1]", "ssrf"),
        ("169.254.169.254", "ssrf"),
        ("10.0.0.1", "ssrf"),
        ("127.0.0.1:99999", "bad_target"),  # an absurd port
        # IPv4 embedded in IPv6: compatible, NAT64 (well-known and local-use), SIIT,
        # mapped, 6to4, Teredo (client 127.0.0.1)
        ("[::7f00:1]", "ssrf"),
        ("[64:ff9b::7f00:1]", "ssrf"),
        ("[64:ff9b:1::a00:1]", "ssrf"),
        ("[::ffff:0:7f00:1]", "ssrf"),
        ("[::ffff:127.0.0.1]", "ssrf"),
        ("[2002:7f00:1::]", "ssrf"),
        ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "ssrf"),
        ("[::1", "bad_target"),
    ],
)
def test_ssrf_targets_are_refused(make_app, probe_guest: Probe, upstream: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    # The rule allows any host on port 8443: only the address check stands in the way.
    rules = [{"scheme": "http", "host": "*", "port": 8443, "methods": ["GET"]}]
    app = callout_app(make_app, probe_guest, rules)
    target = upstream if ":" in upstream.strip("[]") and not upstream.startswith("[") else f"{upstream}:8443"
    with TestClient(app) as client:
        got = probe(client, "callout", **{"x-upstream": target})
        assert got == {"call_status": str(Status.BAD_ARGUMENT)}
        assert client.get("/echo").status_code == 200  # the gateway keeps serving
    (record,) = app.state.gateway.services.audit.recent("probe")
    assert (record.call, record.reason) == (probe_guest.call("proxy_http_call"), reason)
    assert app.state.gateway.services.callouts.started == 0  # nothing was sent


def test_a_name_resolving_to_a_private_address_is_a_failed_callout(make_app, probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    """A name is resolved after the call returned (as in Envoy): the call answers OK and the
    plugin gets a failed callout; the refusal is audited as for a literal address."""
    rules = [{"scheme": "http", "host": "*", "port": 8443, "methods": ["GET"]}]
    app = callout_app(make_app, probe_guest, rules)
    with TestClient(app) as client:
        got = probe(client, "callout", **{"x-upstream": "localhost:8443", "x-request-id": "req-dns"})
        assert (got["call_status"], got["num_headers"]) == ("0", "0")  # the spec's signal for a failed call
        assert client.get("/echo").status_code == 200
    (record,) = app.state.gateway.services.audit.recent("probe")
    assert (record.call, record.reason, record.request_id) == (probe_guest.call("proxy_http_call"), "ssrf", "req-dns")
    callouts = app.state.gateway.services.callouts
    assert (callouts.started, callouts.refused) == (0, 1)  # nothing was sent


def test_a_slow_name_resolution_does_not_hold_the_gateway(make_app, probe_guest: Probe, live, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    """The callout's DNS lookup runs off the event loop: while one request's callout waits
    on a resolver that has not answered, other requests are served."""
    asked, release = threading.Event(), threading.Event()

    async def slow_lookup(host: str, port: int) -> list[str]:
        asked.set()
        await asyncio.to_thread(release.wait, 60)  # answers when the test says so
        return ["10.0.0.1"]  # a private answer: the callout is refused once resolved

    rules = [{"scheme": "http", "host": "slow.example.com", "port": 80, "methods": ["GET"]}]
    app = probe_app(make_app, probe_guest, {"callouts": rules, "limits": {"callout_timeout_ms": 60_000}}, resolver=Resolver(slow_lookup))
    base = live(app)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(http.get, f"{base}/probe", headers={"x-probe": "callout", "x-upstream": "slow.example.com", "x-timeout-ms": "60000"})
        try:
            assert asked.wait(30), "the callout never asked the resolver"
            with httpx.Client(base_url=base, timeout=10, trust_env=False) as other:
                for _ in range(5):
                    assert other.get("/echo").status_code == 200
                    assert other.get("/health").status_code == 200
            assert not waiting.done()  # still waiting on its resolver meanwhile
        finally:
            release.set()
        got = lines(waiting.result(timeout=30).text)
    assert (got["call_status"], got["num_headers"]) == ("0", "0")
    assert [r.reason for r in app.state.gateway.services.audit.recent("probe")] == ["ssrf"]


def test_targets_outside_the_allow_list_are_refused(make_app, probe_guest: Probe, service: str) -> None:  # type: ignore[no-untyped-def]
    port = port_of(service)
    rules = [{"scheme": "http", "host": "127.0.0.1", "port": port, "methods": ["GET"]}]
    app = callout_app(make_app, probe_guest, rules)
    with TestClient(app) as client:
        assert probe(client, "callout", **{"x-upstream": f"127.0.0.1:{port}", "x-method": "POST"})["call_status"] == "2"
        assert probe(client, "callout", **{"x-upstream": f"127.0.0.1:{port + 1}"})["call_status"] == "2"
        assert probe(client, "callout", **{"x-upstream": f"127.0.0.1:{port}", "x-scheme": "https"})["call_status"] == "2"
    assert {r.reason for r in app.state.gateway.services.audit.recent("probe")} == {"not_allowed"}


def test_callout_flood_is_capped_per_request(make_app, probe_guest: Probe, service: str) -> None:  # type: ignore[no-untyped-def]
    port = port_of(service)
    rules = [{"scheme": "http", "host": "127.0.0.1", "port": port, "methods": ["GET"]}]
    app = callout_app(make_app, probe_guest, rules, callouts_per_request=3)
    with TestClient(app) as client:
        got = probe(client, "callout_flood", **{"x-upstream": f"127.0.0.1:{port}", "x-count": "10"})
        assert (got["ok"], got["refused"], got["first_refused_status"]) == ("3", "7", str(Status.BAD_ARGUMENT))
        # The cap is per request: the next one may call out again.
        assert probe(client, "callout_flood", **{"x-upstream": f"127.0.0.1:{port}", "x-count": "1"})["ok"] == "1"
    reasons = [r.reason for r in app.state.gateway.services.audit.recent("probe")]
    assert reasons == ["callout_limit"] * 7


# ---------------------------------------------------------------------- denials
def strip_section(wasm: bytes, name: str) -> bytes:
    """The module without one custom section: a plugin that under-declares its needs."""
    out = bytearray(wasm[:8])
    pos = 8
    while pos < len(wasm):
        start = pos
        section_id = wasm[pos]
        size = shift = 0
        pos += 1
        while True:
            byte = wasm[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        end = pos + size
        if section_id == 0:
            name_len = wasm[pos]
            if wasm[pos + 1 : pos + 1 + name_len] == name.encode():
                pos = end
                continue
        out += wasm[start:end]
        pos = end
    return bytes(out)


def test_every_gated_call_is_denied_without_its_capability(make_app, probe_guest: Probe, tmp_path: Path, module_cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    sneaky = tmp_path / "sneaky.wasm"  # no manifest section, and no sidecar beside it
    sneaky.write_bytes(strip_section(probe_guest.wasm.read_bytes(), MANIFEST_SECTION))
    audit_file = tmp_path / "audit.jsonl"
    app = make_app([plugin("sneaky", sneaky)], policy={"plugins": {"sneaky": {"unpinned": True}}}, audit={"path": str(audit_file)})
    with TestClient(app) as client:
        response = client.get("/probe", headers={"x-probe": "denied_calls", "x-request-id": "req-42"})
        got = lines(response.text)
        assert client.get("/echo").status_code == 200
        metrics = client.get("/metrics").text
    expected_calls = [
        "proxy_http_call",
        "proxy_get_shared_data",
        "proxy_set_shared_data",
        "proxy_register_shared_queue",
        "proxy_resolve_shared_queue",
        "proxy_enqueue_shared_queue",
        "proxy_dequeue_shared_queue",
        "proxy_define_metric",
        "proxy_increment_metric",
        "proxy_record_metric",
        "proxy_get_metric",
        "proxy_set_tick_period_milliseconds",
    ]
    for call in expected_calls:
        assert got[call] == str(Status.UNIMPLEMENTED), call
    assert got["request_body_read"] == str(Status.UNIMPLEMENTED)
    assert got["response_body_read"] == str(Status.UNIMPLEMENTED)
    app.state.gateway.services.audit.close()  # written by the audit thread: write out the rest
    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert {r["call"] for r in records} >= {probe_guest.call(c) for c in expected_calls + ["proxy_get_buffer_bytes"]}
    assert all(r["plugin"] == "sneaky" and r["reason"] == "capability" and r["request_id"] == "req-42" for r in records)
    assert f'routeiq_hostcall_denials_total{{call="{probe_guest.call("proxy_get_shared_data")}",plugin="sneaky",reason="capability"}} 1.0' in metrics
    assert app.state.gateway.plugin("sneaky").stats.traps == 0


def test_body_callbacks_are_skipped_without_the_body_capability(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    # The probe's body_rewrite would change both bodies; without the grants it is not asked.
    policy = {"plugins": {"probe": {"unpinned": True, "capabilities": [c.value for c in Capability]}}}
    with TestClient(make_app([plugin("probe", guests["hostcall_probe"])], policy=policy)) as client:
        assert client.post("/echo", content=b"hello", headers={"x-probe": "body_rewrite"}).json()["BODY"] == "PREFIX:HELLO:SUFFIX"
    sneaky_wasm = strip_section(guests["hostcall_probe"].read_bytes(), MANIFEST_SECTION)
    path = guests["hostcall_probe"].parent / "probe_without_manifest.wasm"
    path.write_bytes(sneaky_wasm)
    try:
        with TestClient(make_app([plugin("probe", path)], policy={"plugins": {"probe": {"unpinned": True}}})) as client:
            response = client.post("/echo", content=b"hello", headers={"x-probe": "body_rewrite"})
            assert response.json()["body"] == "hello"
            assert response.headers["content-length"] == str(len(response.content))
    finally:
        path.unlink()


def test_repeated_denials_are_all_recorded_but_warned_about_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from routeiq.services.audit import AuditLog

    audit = AuditLog(tmp_path / "audit.jsonl", warn_interval_s=60.0)
    with caplog.at_level(logging.WARNING, logger="routeiq.audit"):
        for i in range(100):
            audit.denied("looper", "proxy_http_call", "capability", "http_callout not granted", f"req-{i}")
        audit.denied("other", "proxy_http_call", "capability", "http_callout not granted")
    assert audit.counts[("looper", "proxy_http_call", "capability")] == 100
    assert len(audit.recent("looper")) == 100
    audit.close()  # the file is written by the audit thread; closing writes out the rest
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 101
    warnings = [r.getMessage() for r in caplog.records if r.name == "routeiq.audit"]
    assert len(warnings) == 2 and "looper" in warnings[0] and "other" in warnings[1]

    audit.warn_interval_s = 0.0  # interval over: the next warning says what was folded into it
    with caplog.at_level(logging.WARNING, logger="routeiq.audit"):
        audit.denied("looper", "proxy_http_call", "capability", "http_callout not granted")
    assert "99 more like it" in caplog.records[-1].getMessage()


def fixed_lookup(address: str):  # type: ignore[no-untyped-def]
    """DNS answering one address for every name (what an attacker's zone would do)."""

    async def lookup(host: str, port: int) -> list[str]:
        return [address]

    return lookup


@pytest.mark.parametrize("address", ["::7f00:1", "64:ff9b::a9fe:a9fe", "::ffff:0:a00:1", "2002:c0a8:101::1", "::ffff:169.254.169.254", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "fd00::1", "ff02::1"])
def test_names_resolving_to_embedded_private_addresses_are_refused(address: str) -> None:
    grant = Grant("p", callouts=(CalloutRule(scheme="http", host="*.example.com", port=80, methods=frozenset({"GET"})),))
    headers = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http")]
    planned = plan_callout(grant, "evil.example.com", headers)  # a name: no DNS in the host call
    assert planned.address is None
    with pytest.raises(CalloutRefused) as refused:
        asyncio.run(pin_address(planned, Resolver(fixed_lookup(address))))
    assert refused.value.reason == "ssrf"
    # A public address embedded the same way is fine.
    pinned = asyncio.run(pin_address(plan_callout(grant, "ok.example.com", headers), Resolver(fixed_lookup("64:ff9b::808:808"))))
    assert pinned.address == "64:ff9b::808:808" and pinned.url == "http://[64:ff9b::808:808]:80/"


@pytest.mark.parametrize("target", ["h.example.com:\u0660\u0661", "h.example.com:\u00b2", "h.example.com:+80", "h.example.com: 80", "[zz::1]:80", "h.example.com:80:80", "\u2603.example.com", "a" * 300 + ".example.com", "[::1%eth0]:80"])
def test_unparsable_targets_are_refusals_never_exceptions(target: str) -> None:
    target = target.encode().decode("unicode_escape")
    grant = Grant("p", callouts=(CalloutRule(scheme="http", host="*", port=80, methods=frozenset({"GET"})),))
    headers = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http")]
    with pytest.raises(CalloutRefused):
        plan_callout(grant, target, headers)
