"""Python plugins as WebAssembly components (componentize-py, the routeiq:filter WIT
world) through the real app: the examples, policy denials, the sandbox (fuel, deadline,
memory, exceptions) with fail_open either way, and the compiled-component cache.

The guests are built once per session from guest-examples/python (cached by content
hash under .cache/guests). componentize-py comes from requirements.lock (`./dev setup`);
without it these tests fail, naming the fix.
"""

from __future__ import annotations

import ctypes
import json
import struct
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from routeiq.abi.proxy_wasm import Action
from routeiq.dispatch.component_plugin import ComponentPlugin
from routeiq.dispatch.loader import load_plugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.hostcalls.state import HeaderMap, HttpStream
from routeiq.policy.manifest import load_manifest
from routeiq.policy.model import parse_policy
from routeiq.runtime import component_capi as component
from routeiq.runtime.component import ComponentSandbox
from routeiq.runtime.component_values import HostImport, ValueWriter
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.errors import PluginLoadError
from routeiq.runtime.limits import SandboxLimits
from routeiq.runtime.wasm_runtime import WasmRuntime

from callout_service import create_callout_service
from support import eventually, plugin

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = {"x-hostile": "1"}


def grant(name: str, *capabilities: str, **extra: object) -> dict:  # type: ignore[type-arg]
    return {"plugins": {name: {"unpinned": True, "capabilities": list(capabilities), **extra}}}


# ------------------------------------------------------------------- examples
def test_build_outputs_components_with_manifests(py_guests: dict[str, Path]) -> None:
    assert {"py_tagger", "py_redactor", "py_chunk_counter", "py_rate_limiter", "py_hostile", "py_bench_headers"} <= set(py_guests)
    wasm = py_guests["py_redactor"].read_bytes()
    assert wasm[:8] == b"\0asm\x0d\x00\x01\x00"  # a component (layer 1), not a core module
    manifest, origin = load_manifest(py_guests["py_redactor"], wasm)
    assert origin == "custom section routeiq.manifest"
    assert [c.value for c in manifest.capabilities] == ["request_body"]
    sidecar = json.loads(py_guests["py_redactor"].with_name("py_redactor.manifest.json").read_text())
    assert sidecar["capabilities"] == ["request_body"]


def test_py_tagger_tags_and_denies(make_app, py_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("py_tagger", py_guests["py_tagger"], config={"tag": "demo", "deny_header": "x-block", "deny_paths": ["/admin"]})], policy=None)
    tagger = app.state.gateway.plugin("py_tagger")
    assert isinstance(tagger, ComponentPlugin)
    with TestClient(app) as client:
        ok = client.get("/echo/hi")
        assert ok.status_code == 200
        assert ["x-routeiq-tagged", "demo"] in ok.json()["headers"]
        assert ok.headers["x-routeiq-plugin"] == "py_tagger"
        for denied in (client.get("/echo/hi", headers={"x-block": "1"}), client.get("/admin/users")):
            assert denied.status_code == 403
            assert denied.headers["content-type"] == "application/json"
            assert denied.json() == {"error": {"message": "blocked by py_tagger", "type": "forbidden"}}
        health = client.get("/health").json()["plugins"][0]
    assert health["kind"] == "component" and health["abi_version"].startswith("routeiq:filter@0.2.0")
    assert health["state"] == "ready" and health["traps"] == 0


def test_py_redactor_masks_the_json_body(make_app, py_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("py_redactor", py_guests["py_redactor"])], policy=grant("py_redactor", "request_body"))
    body = {"model": "m", "messages": [{"role": "user", "content": "I am ann@corp.example, key sk-live-0123456789abcdefXYZ"}]}
    with TestClient(app) as client:
        answer = client.post("/echo", json=body)
        clean = client.post("/echo", json={"messages": [{"role": "user", "content": "nothing secret"}]})
    assert answer.status_code == 200
    sent = json.loads(answer.json()["body"])
    assert sent["messages"][0]["content"] == "I am [REDACTED_EMAIL], key [REDACTED_KEY]"
    assert answer.headers["x-routeiq-redactions"] == "2"
    assert ["content-length", str(len(answer.json()["body"]))] in answer.json()["headers"]  # fixed after the rewrite
    assert clean.headers["x-routeiq-redactions"] == "0"
    assert json.loads(clean.json()["body"]) == {"messages": [{"role": "user", "content": "nothing secret"}]}


def test_py_chunk_counter_counts_the_stream_at_on_log(make_app, py_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("py_chunk_counter", py_guests["py_chunk_counter"])], policy=grant("py_chunk_counter", "response_body"))
    chat = {"model": "routeiq-mock", "stream": True, "messages": [{"role": "user", "content": "one two three four five"}]}
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json=chat)
    assert response.status_code == 200
    events = [e for e in response.content.split(b"\n\n") if e.startswith(b"data:")]
    assert len(events) == 9  # 7 deltas, the final chunk, [DONE]
    logs = app.state.gateway.logs.messages
    lines = eventually(lambda: [m for m in logs("py_chunk_counter") if m.startswith("py_chunk_counter: ")])
    assert lines, logs("py_chunk_counter")
    fields = dict(part.split("=") for part in lines[-1].removeprefix("py_chunk_counter: ").split())
    assert int(fields["bytes"]) == len(response.content)
    assert int(fields["events"]) == 9
    assert 1 <= int(fields["chunks"]) <= 9


def test_py_rate_limiter_holds_its_limit_per_key(make_app, py_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app(
        [plugin("py_rate_limiter", py_guests["py_rate_limiter"], config={"limit": 3, "window_s": 86400, "header": "x-api-key"})],
        policy=grant("py_rate_limiter", "shared_kv"),
    )
    with TestClient(app) as client:
        answers = [client.get("/echo", headers={"x-api-key": "alice"}) for _ in range(5)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
        assert [r.headers.get("x-ratelimit-remaining") for r in answers[:3]] == ["2", "1", "0"]
        limited = answers[3]
        assert limited.json()["error"]["type"] == "rate_limit_exceeded"
        assert 0 < int(limited.headers["retry-after"]) <= 86400
        assert limited.headers["x-ratelimit-limit"] == "3"
        assert client.get("/echo", headers={"x-api-key": "bob"}).status_code == 200  # keys are independent
        metrics = client.get("/metrics").text
        # A header too long for a KV key is fingerprinted, not a way around the limit.
        assert [client.get("/echo", headers={"x-api-key": "x" * 300}).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert 'routeiq_kv_operations_total{op="set",plugin="py_rate_limiter"} 4.0' in metrics


def ext_auth_app(make_app, py_guests: dict[str, Path], service: str, path: str = "/check", fail_open: bool = False):  # type: ignore[no-untyped-def]
    host, port = service.rsplit(":", 1)
    policy = grant("py_ext_auth", "http_callout", callouts=[{"scheme": "http", "host": host, "port": int(port), "methods": ["GET"]}])
    config = {"upstream": service, "path": path, "timeout_ms": 200}
    return make_app([plugin("py_ext_auth", py_guests["py_ext_auth"], config=config, fail_open=fail_open)], policy=policy)


def test_py_ext_auth_calls_out_and_resumes_or_denies(make_app, live, py_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    service = live(create_callout_service()).removeprefix("http://")
    app = ext_auth_app(make_app, py_guests, service)
    with TestClient(app) as client:
        allowed = client.get("/echo", headers={"authorization": "Bearer good-token", "x-auth-user": "mallory"})
        assert allowed.status_code == 200
        assert [v for k, v in allowed.json()["headers"] if k == "x-auth-user"] == ["alice"]  # the forgery was dropped
        denied = client.get("/echo", headers={"authorization": "Bearer stolen"})
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == "Bearer"
        assert denied.json()["error"]["type"] == "authentication_error"
    assert "py_ext_auth: status=200 body_bytes=16" in app.state.gateway.logs.messages("py_ext_auth")


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail_closed", "fail_open"])
def test_py_ext_auth_callout_timeout_follows_fail_open(make_app, live, py_guests: dict[str, Path], fail_open: bool) -> None:  # type: ignore[no-untyped-def]
    service = live(create_callout_service()).removeprefix("http://")
    app = ext_auth_app(make_app, py_guests, service, path="/slow", fail_open=fail_open)
    with TestClient(app) as client:
        began = time.monotonic()
        response = client.get("/echo", headers={"authorization": "Bearer good-token"})
        assert time.monotonic() - began < 1.5  # the 2 s service was cut off at 200 ms
    if fail_open:
        assert response.status_code == 200
    else:
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "callout_timeout"
    assert "py_ext_auth: auth call failed" in app.state.gateway.logs.messages("py_ext_auth")


# ------------------------------------------------------------------- policy
# Every byte value, invalid UTF-8 (lone continuation, overlong, truncated, encoded
# surrogate, 0xfe/0xff) and a `secret` for py_bench_filter to mask.
BINARY = bytes(range(256)) + b"\x80\xc0\xaf\xc3\x28\xe2\x82\xed\xa0\x80\xfe\xff secret \x00" + bytes(range(255, -1, -1))


def bench_filter_vm(runtime: WasmRuntime, wasm: Path, limits: SandboxLimits = SandboxLimits()):  # type: ignore[no-untyped-def]
    policy = parse_policy({"plugins": {"py_bench_filter": {"unpinned": True, "capabilities": ["request_body", "response_body", "shared_kv"]}}}, "test policy")
    loaded = load_plugin(PluginSpec("py_bench_filter", wasm, limits=limits), runtime, policy=policy)
    vm = loaded.start()
    stream = HttpStream(request_headers=HeaderMap(), response_trailers=HeaderMap())
    context = vm.new_context(stream)
    vm.call("proxy_on_context_create", context, context.context_id, vm.root.context_id)
    return loaded, vm, stream, context


def test_binary_bodies_cross_the_component_boundary_exactly(py_guests: dict[str, Path], module_cache_dir: Path) -> None:
    # Bytes travel as latin-1-mapped byte-strings: every byte value must come back as
    # itself, whatever UTF-8 would make of it, and lengths must count bytes.
    runtime = WasmRuntime(EngineSettings(), module_cache_dir)
    try:
        loaded, vm, stream, context = bench_filter_vm(runtime, py_guests["py_bench_filter"])
        cid = context.context_id
        stream.request_body = bytearray(BINARY)
        assert vm.call("proxy_on_request_body", context, cid, len(BINARY), 1) == Action.CONTINUE
        assert bytes(stream.request_body) == BINARY.replace(b"secret", b"******") != BINARY
        for chunk in (BINARY, bytes(range(128, 256))):  # the guest adds up len(body.read())
            stream.response_body = bytearray(chunk)
            vm.call("proxy_on_response_body", context, cid, len(chunk), 0)
        vm.call("proxy_on_response_trailers", context, cid, 0)
        assert stream.response_trailers is not None
        assert stream.response_trailers.get(b"x-routeiq-body-bytes") == str(len(BINARY) + 128).encode()
        assert loaded.stats.traps == 0
        loaded.close()
    finally:
        runtime.close()


def test_large_body_rewrites_do_not_grow_guest_memory(py_guests: dict[str, Path], module_cache_dir: Path) -> None:
    # With list<u8> bodies the guest's linear memory grew on every 64 KiB set-buffer and
    # the default 16 MiB limit trapped after ~79 rewrites; byte-strings do not leak.
    body = (b'{"role":"user","content":"a secret here"},' * 1600)[: 64 * 1024]
    runtime = WasmRuntime(EngineSettings(), module_cache_dir)
    try:
        loaded, vm, stream, context = bench_filter_vm(runtime, py_guests["py_bench_filter"])
        for _ in range(200):
            stream.request_body = bytearray(body)
            vm.call("proxy_on_request_body", context, context.context_id, len(body), 1)
        assert bytes(stream.request_body) == body.replace(b"secret", b"******")
        assert loaded.stats.traps == 0
        loaded.close()
    finally:
        runtime.close()


def test_a_byte_string_beyond_latin1_answers_bad_argument() -> None:
    # The SDK never sends one, but another guest could: a code point above U+00FF carries
    # no byte, so the host answers `bad-argument` without calling the implementation.
    calls: list[bytes] = []
    imp = HostImport("set-llm-messages", ("bytes",), ("result", None), lambda data: calls.append(data) or 0)
    sandbox = ComponentSandbox.__new__(ComponentSandbox)  # only the thunk is exercised
    sandbox._values = ValueWriter()
    thunk = ComponentSandbox._make_thunk(sandbox, imp)
    results = ctypes.create_string_buffer(component.VAL)
    for text, status in (("ok \u00ff\u0000", None), ("\u0101", "bad-argument")):
        utf8 = ctypes.create_string_buffer(text.encode(), len(text.encode()))
        args = ctypes.create_string_buffer(struct.pack("<B7xQQQ", component.K_STRING, len(utf8.raw), ctypes.addressof(utf8), 0), component.VAL)
        assert thunk(0, 0, 0, ctypes.addressof(args), 1, ctypes.addressof(results), 1) == 0
        kind, is_ok, boxed = struct.unpack_from("<B7xBxxxxxxxQ", results.raw)
        assert kind == component.K_RESULT
        if status is None:
            assert is_ok == 1
        else:
            assert is_ok == 0
            enum = ctypes.string_at(boxed, component.VAL)
            size, ptr = struct.unpack_from("<QQ", enum, 8)
            assert ctypes.string_at(ptr, size).decode() == status
            component.val_delete(ctypes.addressof(results))
    assert calls == ["ok \u00ff\u0000".encode("latin-1")]


def test_manifest_needs_are_refused_before_compiling(tmp_path: Path, py_guests: dict[str, Path]) -> None:
    runtime = WasmRuntime(EngineSettings(), tmp_path / "cache")
    try:
        with pytest.raises(PluginLoadError, match=r"'py_rate_limiter' needs shared_kv .*the policy has no entry for it"):
            load_plugin(PluginSpec("py_rate_limiter", py_guests["py_rate_limiter"]), runtime)
        cache = runtime.component_cache
        assert (cache.hits, cache.misses) == (0, 0)  # nothing was compiled
        assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    finally:
        runtime.close()


def test_pin_mismatch_is_refused_before_compiling(tmp_path: Path, py_guests: dict[str, Path]) -> None:
    from routeiq.policy.model import PolicyModel

    runtime = WasmRuntime(EngineSettings(), tmp_path / "cache")
    policy = PolicyModel.model_validate({"plugins": {"py_tagger": {"sha256": "0" * 64, "capabilities": []}}})
    try:
        with pytest.raises(PluginLoadError, match="does not match the policy's pin"):
            load_plugin(PluginSpec("py_tagger", py_guests["py_tagger"]), runtime, policy=policy)
        assert runtime.component_cache.misses == 0
    finally:
        runtime.close()


def test_calls_outside_the_grant_answer_statuses_and_are_audited(make_app, py_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    # py_probe has no manifest, so it loads with nothing granted; every gated call it
    # makes is refused at run time with a status, audited, and never traps.
    app = make_app([plugin("py_probe", py_guests["py_probe"])], policy={"plugins": {"py_probe": {"unpinned": True, "capabilities": []}}})
    probe = app.state.gateway.plugin("py_probe")
    with TestClient(app) as client:
        response = client.get("/echo/probe")
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    seen = {k.removeprefix("x-probe-"): v for k, v in response.json()["headers"] if k.startswith("x-probe-")}
    gated = {k: v for k, v in seen.items() if k not in ("time", "random")}
    assert gated == {"kv-get": "unimplemented", "kv-set": "unimplemented", "metric": "unimplemented", "llm": "unimplemented", "tick": "unimplemented", "callout": "unimplemented"}
    audit = app.state.gateway.services.audit.counts
    for call in ("get-shared-data", "set-shared-data", "define-metric", "get-llm-request", "set-tick-period", "http-call"):
        assert audit[("py_probe", call, "capability")] == 1, audit
    assert 'routeiq_hostcall_denials_total{call="get-shared-data",plugin="py_probe",reason="capability"} 1.0' in metrics
    assert probe.stats.traps == 0 and probe.describe()["vm_generation"] == 1
    assert "py_probe: probed" in app.state.gateway.logs.messages("py_probe")  # print() is plugin log


def test_wasi_clock_and_randomness_work_without_grants(make_app, py_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(2):  # two VMs: the random seed is not baked in at build time
        app = make_app([plugin("py_probe", py_guests["py_probe"])], policy=None)
        with TestClient(app) as client:
            headers = dict(client.get("/echo").json()["headers"])
        assert abs(int(headers["x-probe-time"]) - time.time()) < 60
        samples.append(headers["x-probe-random"])
    assert samples[0] != samples[1]


def test_callout_target_outside_the_allow_list_is_refused(make_app, py_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    policy = grant("py_probe", "http_callout", "shared_kv", "metrics", "timers", "llm_request", callouts=[{"scheme": "http", "host": "127.0.0.1", "port": 9101, "methods": ["GET"]}])
    app = make_app([plugin("py_probe", py_guests["py_probe"])], policy=policy)
    with TestClient(app) as client:
        response = client.get("/echo/probe")
    seen = {k.removeprefix("x-probe-"): v for k, v in response.json()["headers"] if k.startswith("x-probe-")}
    assert seen["callout"] == "bad-argument" and seen["kv-set"] == "ok" and seen["metric"] == "ok"
    assert app.state.gateway.services.audit.counts[("py_probe", "http-call", "not_allowed")] == 1


# ------------------------------------------------------------------ sandbox
CASES = [
    # config mode, limits, expected error kind, phrase of the error
    ("loop", {"fuel": 5_000_000, "timeout_ms": 10_000}, "fuel_exhausted", "ran out of fuel"),
    ("loop", {"fuel": 10**15, "timeout_ms": 50}, "deadline_exceeded", "50 ms deadline"),
    ("memory", {"memory_mb": 24}, "memory_limit", "24 MiB memory limit"),
    ("raise", {}, "trap", "raised ValueError: py_hostile was asked to fail"),
]


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail_closed", "fail_open"])
@pytest.mark.parametrize("mode, limits, kind, phrase", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_hostile_python_guest(make_app, py_guests: dict[str, Path], mode: str, limits: dict[str, int], kind: str, phrase: str, fail_open: bool) -> None:  # type: ignore[no-untyped-def]
    app = make_app(
        [
            plugin("py_tagger", py_guests["py_tagger"]),
            plugin("bad", py_guests["py_hostile"], config={"mode": mode}, fail_open=fail_open, limits=limits),
        ]
    )
    bad = app.state.gateway.plugin("bad")
    with TestClient(app) as client:
        began = time.monotonic()
        response = client.get("/echo/x", headers=HOSTILE)
        assert time.monotonic() - began < 5
        if fail_open:
            assert response.status_code == 200
            assert ["x-routeiq-tagged", "routeiq"] in response.json()["headers"]  # the healthy plugin still ran
        else:
            assert response.status_code == 503
            error = response.json()["error"]
            assert (error["type"], error["code"], error["plugin"]) == ("plugin_error", kind, "bad")
            assert response.headers["x-routeiq-plugin-error"] == "bad"
        assert bad.stats.traps_by_kind == {kind: 1}

        clean = client.get("/echo/x")
        assert clean.status_code == 200
        assert ["x-routeiq-hostile", "calm"] in clean.json()["headers"]  # served by a fresh VM
        assert bad.describe()["vm_generation"] == 2
        health = client.get("/health").json()
        assert {p["name"]: p["state"] for p in health["plugins"]} == {"py_tagger": "ready", "bad": "ready"}
        assert phrase in health["plugins"][1]["last_error"]
    if kind == "trap":  # the traceback went to the plugin log
        assert any("ValueError: py_hostile was asked to fail" in m for m in app.state.gateway.logs.messages("bad"))


def test_memory_limit_below_the_component_minimum_refuses_the_plugin(tmp_path: Path, py_guests: dict[str, Path], module_cache_dir: Path) -> None:
    runtime = WasmRuntime(EngineSettings(), module_cache_dir)
    try:
        plugin_ = load_plugin(PluginSpec("small", py_guests["py_tagger"], limits=SandboxLimits(memory_bytes=8 * 1024 * 1024)), runtime)
        with pytest.raises(PluginLoadError, match=r"memory limit is 8 MiB; raise limits.memory_mb"):
            plugin_.start()
    finally:
        runtime.close()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_discarded_component_vms_do_not_grow_the_gateway(make_app, py_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("bomb", py_guests["py_hostile"], config={"mode": "memory"}, limits={"memory_mb": 32, "fuel": 500_000_000}, quarantine={"max_traps": 1000})])
    with TestClient(app) as client:
        for _ in range(5):
            assert client.get("/echo", headers=HOSTILE).status_code == 503
        before = rss_kib()
        for _ in range(20):
            assert client.get("/echo", headers=HOSTILE).status_code == 503
        after = rss_kib()
        assert client.get("/echo").status_code == 200
    # 20 more discarded VMs of 32 MiB each would be ~640 MiB if they leaked.
    assert after - before < 128 * 1024, f"RSS grew by {(after - before) // 1024} MiB"
    assert app.state.gateway.plugin("bomb").stats.traps_by_kind == {"memory_limit": 25}


# -------------------------------------------------------------------- cache
def test_a_second_runtime_loads_the_compiled_component_from_the_cache(tmp_path: Path, py_guests: dict[str, Path]) -> None:
    cache_dir = tmp_path / "component-cache"
    timings = []
    for _ in range(2):
        runtime = WasmRuntime(EngineSettings(), cache_dir)
        try:
            began = time.perf_counter()
            loaded = load_plugin(PluginSpec("py_tagger", py_guests["py_tagger"]), runtime)
            loaded.start()
            timings.append(time.perf_counter() - began)
            cache = runtime.component_cache
            timings.append((cache.hits, cache.misses))
            loaded.close()
        finally:
            runtime.close()
    first, first_counts, second, second_counts = timings
    assert first_counts == (0, 1)  # compiled, then serialized to the cache
    assert second_counts == (1, 0)  # a restart deserializes: no recompilation
    assert len(list(cache_dir.glob("*.component.cwasm"))) == 1
    assert second < first / 5, (first, second)
