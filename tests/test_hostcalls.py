"""Every host call, exercised by the hostcall_probe guest through the real app.

The probe answers `key=value` lines (see guest-examples/rust/README.md); these tests
judge them against the proxy-wasm v0.2.1 spec.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from routeiq.abi.proxy_wasm import LogLevel, Status, WasiErrno, encode_map
from routeiq.hostcalls.unimplemented import UNIMPLEMENTED_CALLS
from support import eventually, plugin


@pytest.fixture
def probe_app(make_app, guests: dict[str, Path]):  # type: ignore[no-untyped-def]
    return make_app(
        [
            plugin(
                "probe",
                guests["hostcall_probe"],
                root_id="probe-root",
                config={"k": "v"},
                vm_config="vm-settings",
                env={"GREETING": "hello", "MODE": "test"},
                log_level="trace",
            )
        ]
    )


@pytest.fixture
def client(probe_app):  # type: ignore[no-untyped-def]
    with TestClient(probe_app) as c:
        yield c


def lines(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    out = {}
    for line in response.text.splitlines():
        key, _, value = line.partition("=")
        out[key] = value
    return out


def run(client: TestClient, scenario: str, path: str = "/probe", **headers: str) -> dict[str, str]:
    return lines(client.get(path, headers={"x-probe": scenario, **headers}))


def test_properties(client: TestClient) -> None:
    got = run(client, "properties", path="/probe/x?q=1")
    assert got["request.path"] == "/probe/x?q=1"
    assert got["request.method"] == "GET"
    assert got["request.scheme"] == "http"
    assert got["request.host"] == "testserver"
    assert got["plugin_name"] == "probe"
    assert got["plugin_root_id"] == "probe-root"
    assert got["request.headers.x-probe"] == "properties"
    assert got["no.such!status"] == str(Status.NOT_FOUND)


def test_header_reads(client: TestClient) -> None:
    sent = {"x-probe": "headers_read", "x-probe-in": "hello", "x-request-id": "rid-1"}
    response = client.get("/probe", headers=sent)
    got = lines(response)
    on_wire = [(k.lower().encode(), v.encode()) for k, v in response.request.headers.items() if k.lower() != "host"]
    pseudo = [(b":method", b"GET"), (b":path", b"/probe"), (b":authority", b"testserver"), (b":scheme", b"http")]
    assert int(got["count"]) == len(pseudo) + len(on_wire)
    assert got["size_status"] == "0"
    assert int(got["size"]) == len(encode_map(pseudo + on_wire))
    assert got["value"] == "hello"
    assert got["missing_status"] == str(Status.NOT_FOUND)
    assert got["bad_map_status"] == str(Status.BAD_ARGUMENT)


def test_header_writes_reach_upstream_and_client(client: TestClient) -> None:
    response = client.get("/echo", headers={"x-probe": "headers_write", "x-replace": "old", "x-remove": "bye"})
    assert response.status_code == 200
    upstream_saw = {k: v for k, v in response.json()["headers"]}
    assert upstream_saw["x-added"] == "a1"
    assert upstream_saw["x-replace"] == "new"
    assert "x-remove" not in upstream_saw
    assert response.headers["x-set-pairs"] == "yes"
    assert response.headers["x-probe-seen"] == "response"
    assert response.headers["x-probe-write-status"] == "add=0,replace=0,remove=0,set_pairs=0"


def test_body_rewrite_both_directions(client: TestClient) -> None:
    response = client.post("/echo", content=b"hello", headers={"x-probe": "body_rewrite"})
    assert response.status_code == 200
    assert response.headers["x-req-body-seen"] == "5"
    assert "content-length" not in response.headers  # the body may change, so it is sent chunked
    echoed = json.loads(response.text)  # every ASCII letter upper-cased by the response-body hook
    assert echoed["BODY"] == "PREFIX:HELLO:SUFFIX"
    assert echoed["BODY_LENGTH"] == len("PREFIX:hello:SUFFIX")  # the host fixed content-length upstream
    assert echoed["METHOD"] == "POST"


def test_configuration_buffers(client: TestClient) -> None:
    got = run(client, "config")
    assert got["plugin_config"] == '{"k":"v"}'
    assert got["vm_config"] == "vm-settings"
    assert got["bad_buffer_status"] == str(Status.BAD_ARGUMENT)


def test_logging_levels_and_fd_write(client: TestClient, probe_app) -> None:  # type: ignore[no-untyped-def]
    got = run(client, "log")
    assert got["bad_level_status"] == str(Status.BAD_ARGUMENT)
    assert got["log_level"] == str(int(LogLevel.TRACE))
    assert got["fd_write_errno"] == "0" and got["stderr_errno"] == "0"
    assert got["bad_fd_errno"] == str(WasiErrno.BADF)
    records = probe_app.state.gateway.logs.records("probe")
    by_message = {r.message: r.level for r in records}
    for level in range(6):
        assert by_message[f"probe-log-{level}"] == LogLevel(level)
    assert by_message["probe-stdout"] == LogLevel.INFO
    assert by_message["probe-stderr"] == LogLevel.ERROR
    assert "probe-bad-fd" not in by_message


def test_plugin_log_level_filters_messages(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("probe", guests["hostcall_probe"], log_level="warn")])
    with TestClient(app) as c:
        got = run(c, "log")
    assert got["log_level"] == str(int(LogLevel.WARN))
    messages = app.state.gateway.logs.messages("probe")
    assert "probe-log-3" in messages and "probe-log-5" in messages
    assert "probe-log-2" not in messages and "probe-stdout" not in messages


def test_clocks_and_randomness(client: TestClient) -> None:
    first = run(client, "time")
    now, mono = time.time_ns(), time.monotonic_ns()
    assert abs(int(first["now_ns"]) - now) < 5e9
    assert abs(int(first["wasi_realtime"]) - now) < 5e9
    assert abs(int(first["wasi_monotonic"]) - mono) < 5e9
    assert first["bad_clock_errno"] == str(WasiErrno.NOTSUP)
    assert first["random_errno"] == "0"
    assert re.fullmatch(r"[0-9a-f]{32}", first["random_hex"])
    assert run(client, "time")["random_hex"] != first["random_hex"]


def test_environment_is_the_plugins_own(client: TestClient, make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    got = run(client, "environ")
    assert got["count"] == "2"
    assert got["buf_size"] == str(len(b"GREETING=hello\0MODE=test\0"))
    assert got["env.GREETING"] == "hello" and got["env.MODE"] == "test"
    # Nothing of the host's environment leaks in when none is configured.
    with TestClient(make_app([plugin("bare", guests["hostcall_probe"])])) as bare:
        assert run(bare, "environ") == {"count": "0", "buf_size": "0"}


def test_local_response(client: TestClient) -> None:
    response = client.get("/echo", headers={"x-probe": "local_response"})
    assert response.status_code == 418
    assert response.text == "short and stout"
    assert response.headers["x-local"] == "yes"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-request-id"]


def test_continue_stream_resumes_a_paused_request(client: TestClient) -> None:
    response = client.get("/echo", headers={"x-probe": "continue_stream"})
    assert response.status_code == 200
    assert response.json()["path"] == "/echo"  # the upstream was reached
    assert response.headers["x-continue-status"] == "0"
    assert response.headers["x-bad-stream-status"] == str(Status.BAD_ARGUMENT)


def test_close_stream_ends_the_exchange(client: TestClient, probe_app) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/echo", headers={"x-probe": "close_stream"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "stream_closed"
    assert "probe close_stream status=0" in probe_app.state.gateway.logs.messages("probe")


def test_set_effective_context(client: TestClient) -> None:
    got = run(client, "effective_context")
    assert got == {"own_status": "0", "bad_status": str(Status.BAD_ARGUMENT), "restore_status": "0"}


def test_proxy_done_without_pending_finalization(client: TestClient) -> None:
    assert run(client, "done") == {"done_status": str(Status.NOT_FOUND)}


def test_unprovided_calls_answer_unimplemented(client: TestClient) -> None:
    assert run(client, "unimplemented") == {"foreign_status": str(Status.NOT_FOUND), "grpc_status": str(Status.UNIMPLEMENTED)}


def test_on_log_runs_after_each_exchange(client: TestClient, probe_app) -> None:  # type: ignore[no-untyped-def]
    client.get("/echo/logged")
    assert eventually(lambda: "probe on_log path=/echo/logged" in probe_app.state.gateway.logs.messages("probe"))


def test_bad_pointers_get_statuses_not_traps(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("ptr", guests["hostile_pointers"])])
    with TestClient(app) as c:
        response = c.get("/echo", headers={"x-hostile": "1"})
        assert response.status_code == 200, response.text
        results = {}
        for line in response.text.splitlines():
            name, _, value = line.partition("=")
            results[name] = int(value)
        # The plugin survived: same VM, and it still answers.
        assert c.get("/echo", headers={"x-hostile": "1"}).status_code == 200
    assert app.state.gateway.plugin("ptr").stats.traps == 0
    wasi = {"fd_write", "clock_time_get", "random_get", "environ_sizes_get", "environ_get", "args_sizes_get"}
    assert len(results) > 40
    for name, status in results.items():
        call = name.split(".")[0]
        if name.startswith("setup."):
            assert status == Status.OK, name  # valid calls that set up the later cases
        elif call in UNIMPLEMENTED_CALLS:
            assert status == Status.UNIMPLEMENTED, name
        elif name == "proxy_set_header_map_pairs.malformed":
            assert status == Status.BAD_ARGUMENT, name
        elif name == "random_get.size":
            assert status in (WasiErrno.INVAL, WasiErrno.FAULT), name
        elif call in wasi:
            assert status == WasiErrno.FAULT, name
        else:
            assert status == Status.INVALID_MEMORY_ACCESS, name
