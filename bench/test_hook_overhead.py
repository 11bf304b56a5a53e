"""One proxy_on_request_headers round trip: 10 request headers, read one, add one.

Columns: the Rust guest through RouteIQ's host (unchecked calls), the same logic as a
native Python hook, and the same guest through wasmtime-py's default checked path
(`Func.__call__`, `Linker.define_func`). Run with `./dev bench`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from routeiq.abi.proxy_wasm import Action, MapType, Status
from routeiq.dispatch.plugin import PluginSpec, ProxyWasmPlugin
from routeiq.hostcalls.state import HeaderMap, HttpStream
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.wasm_runtime import WasmRuntime

HEADERS = [(b":method", b"POST"), (b":path", b"/v1/chat/completions"), (b":authority", b"gw"), (b":scheme", b"http")] + [
    (b"content-type", b"application/json"),
    (b"x-api-key", b"sk-test"),
    (b"user-agent", b"bench"),
    (b"accept", b"*/*"),
    (b"x-request-id", b"0123456789abcdef"),
    (b"content-length", b"120"),
]
assert len(HEADERS) == 10


@pytest.fixture(scope="module")
def runtime():  # type: ignore[no-untyped-def]
    rt = WasmRuntime(EngineSettings(), None)
    yield rt
    rt.close()


def test_rust_guest_routeiq_host(benchmark, runtime: WasmRuntime, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    plugin = ProxyWasmPlugin(PluginSpec("bench", guests["bench_headers"]), runtime)
    vm = plugin.start()
    stream = HttpStream(request_headers=HeaderMap(list(HEADERS)))
    context = vm.new_context(stream)
    vm.call("proxy_on_context_create", context, context.context_id, vm.root.context_id)
    call = vm.call
    headers = stream.request_headers

    def hook() -> int | None:
        headers.pairs = list(HEADERS)
        return call("proxy_on_request_headers", context, context.context_id, 10, 1)

    assert benchmark(hook) == Action.CONTINUE
    assert headers.get(b"x-routeiq-seen") == b"1"


def native_hook(headers: HeaderMap) -> Action:
    seen = b"1" if headers.get(b"x-api-key") is not None else b"anonymous"
    headers.add(b"x-routeiq-seen", seen)
    return Action.CONTINUE


def test_native_python_hook(benchmark) -> None:  # type: ignore[no-untyped-def]
    headers = HeaderMap(list(HEADERS))

    def hook() -> Action:
        headers.pairs = list(HEADERS)
        return native_hook(headers)

    assert benchmark(hook) == Action.CONTINUE
    assert headers.get(b"x-routeiq-seen") == b"1"


def test_rust_guest_wasmtime_py_default_path(benchmark, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    """The same guest and host-call semantics through wasmtime-py's ordinary API."""
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, str(guests["bench_headers"]))
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    headers = HeaderMap(list(HEADERS))
    state: dict[str, object] = {}
    i32 = wasmtime.ValType.i32()

    def memory() -> wasmtime.Memory:
        return state["memory"]  # type: ignore[return-value]

    def read(ptr: int, size: int) -> bytes:
        return bytes(memory().read(store, ptr, ptr + size))

    def write_u32(ptr: int, value: int) -> None:
        memory().write(store, value.to_bytes(4, "little"), ptr)

    def proxy_log(level: int, ptr: int, size: int) -> int:
        return Status.OK

    def get_value(map_type: int, key: int, key_size: int, ret_ptr: int, ret_size: int) -> int:
        value = headers.get(read(key, key_size)) if map_type == MapType.HTTP_REQUEST_HEADERS else None
        if value is None:
            return Status.NOT_FOUND
        ptr = state["alloc"](store, len(value))  # type: ignore[operator]
        memory().write(store, value, ptr)
        write_u32(ret_ptr, ptr)
        write_u32(ret_size, len(value))
        return Status.OK

    def add_value(map_type: int, key: int, key_size: int, value: int, value_size: int) -> int:
        headers.add(read(key, key_size), read(value, value_size))
        return Status.OK

    linker.define_func("env", "proxy_log", wasmtime.FuncType([i32] * 3, [i32]), proxy_log)
    linker.define_func("env", "proxy_get_header_map_value", wasmtime.FuncType([i32] * 5, [i32]), get_value)
    linker.define_func("env", "proxy_add_header_map_value", wasmtime.FuncType([i32] * 5, [i32]), add_value)
    instance = linker.instantiate(store, module)
    exports = instance.exports(store)
    state["memory"] = exports["memory"]
    state["alloc"] = exports["proxy_on_memory_allocate"]
    exports["_initialize"](store)
    exports["proxy_on_context_create"](store, 1, 0)
    exports["proxy_on_vm_start"](store, 1, 0)
    exports["proxy_on_configure"](store, 1, 0)
    exports["proxy_on_context_create"](store, 2, 1)
    on_headers = exports["proxy_on_request_headers"]

    def hook() -> int:
        headers.pairs = list(HEADERS)
        return on_headers(store, 2, 10, 1)

    assert benchmark(hook) == Action.CONTINUE
    assert headers.get(b"x-routeiq-seen") == b"1"
