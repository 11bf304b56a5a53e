"""Per-hook overhead matrix: one callback round trip per row, the same filter logic in
every column (guest-examples/rust/bench_filter and its siblings).

Rows (10 request headers: 4 pseudo-headers and 6 ordinary ones):
  request_headers      proxy_on_request_headers: read `x-api-key`, add `x-routeiq-seen: 1`
  request_body_1k/64k  proxy_on_request_body, end_of_stream: read the whole body, mask
                       every `secret` as `******`, write the whole body back
  response_chunk       proxy_on_response_body, one 512-byte chunk: add its length to a
                       per-request counter (checked afterwards via a response trailer)
  kv_get_set           proxy_on_response_headers: shared-data counter += 1 with CAS
  denied_call          proxy_on_log: an HTTP callout without the http_callout grant; the
                       host refuses (UNIMPLEMENTED) and audits it, the guest ignores it

Columns:
  native               plain Python over HeaderMap / bytearray / a dict KV
  rust, c, assemblyscript, python
                       the bench_filter guests through RouteIQ's host (load_plugin; Python
                       is a componentize-py component); granted request_body,
                       response_body and shared_kv by an operator policy
  wasmtime-py          the Rust guest through wasmtime-py's ordinary API (`Func.__call__`,
                       `Linker.define_func` host functions in Python)
  extism               Extism's Python host SDK running bench/extism_guest/bench_filter.c:
                       data rows are Extism input/output, KV and the callout are Python
                       host functions

native, wasmtime-py and extism share one host-side implementation (PeerHost): RouteIQ's
capability check, KV CAS rules and audit log, without RouteIQ's sandbox plumbing. Every
cell asserts that the hook did its work. Run with `./dev bench -k test_hook_matrix`.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import pytest
import wasmtime

from routeiq.abi.capabilities import CREATE_IF_ABSENT_CAS, Capability
from routeiq.abi.proxy_wasm import Action, BufferType, MapType, Status, decode_map
from routeiq.dispatch.loader import load_plugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.hostcalls.state import HeaderMap, HostServices, HttpStream
from routeiq.policy.model import parse_policy
from routeiq.runtime.limits import SandboxLimits
from routeiq.runtime.wasm_runtime import WasmRuntime
from routeiq.services.audit import AuditLog
from routeiq.services.shared_store import next_cas
from routeiq.toolchain.c import COMMON_FLAGS, ensure_c_compiler
from routeiq.toolchain.rust import BuildFailed

from inputs import HEADERS

ROOT = Path(__file__).resolve().parents[1]
EXTISM_SOURCE = Path(__file__).resolve().parent / "extism_guest" / "bench_filter.c"

RESPONSE_HEADERS = ((b":status", b"200"), (b"content-type", b"application/json"))
CHUNK = bytes(range(256)) * 2
assert len(CHUNK) == 512
COUNTER_KEY = b"bench-counter"
TRAILER = b"x-routeiq-body-bytes"
GRANTED = frozenset({Capability.REQUEST_BODY, Capability.RESPONSE_BODY, Capability.SHARED_KV})


def make_body(size: int) -> bytes:
    """`size` bytes of chat-request JSON; every fourth message holds a `secret`."""
    out = bytearray(b'{"model":"gpt-4o","messages":[')
    i = 0
    while len(out) < size:
        word = b"secret" if i % 4 == 0 else b"public"
        out += b'{"role":"user","content":"note %04d: the %s word is here"},' % (i, word)
        i += 1
    body = bytes(out[: size - 2]) + b"]}"
    assert len(body) == size and body.count(b"secret") >= 2
    return body


BODIES = MappingProxyType({"request_body_1k": make_body(1024), "request_body_64k": make_body(64 * 1024)})
ROWS = ("request_headers", "request_body_1k", "request_body_64k", "response_chunk", "kv_get_set", "denied_call")
GUESTS = MappingProxyType({"rust": "bench_filter", "c": "c_bench_filter", "assemblyscript": "as_bench_filter", "python": "py_bench_filter"})
COLUMNS = ("native", *GUESTS, "wasmtime-py", "extism")


@dataclass
class Cell:
    """One matrix cell: `hook` is what is timed, `check(last_result, calls)` asserts the
    hook did its work every time it ran."""

    hook: Callable[[], Any]
    check: Callable[[Any, int], None]
    close: Callable[[], None] = field(default=lambda: None)


def new_stream() -> HttpStream:
    return HttpStream(
        request_headers=HeaderMap(list(HEADERS)),
        response_headers=HeaderMap(list(RESPONSE_HEADERS)),
        response_trailers=HeaderMap(),
        response_body=bytearray(CHUNK),
    )


# --------------------------------------------------------- host side of the peers
class PeerHost:
    """What the native, wasmtime-py and Extism columns' host functions do: RouteIQ's
    semantics (capability check, KV with CAS and create tokens, audited refusals) over a
    plain dict, so those columns differ from RouteIQ's only in the plumbing."""

    def __init__(self, plugin: str, granted: frozenset[Capability] = GRANTED) -> None:
        self.plugin = plugin
        self.granted = granted
        self.kv: dict[bytes, tuple[bytes, int]] = {}
        self.audit = AuditLog()

    def require(self, call: str, capability: Capability) -> int | None:
        if capability in self.granted:
            return None
        self.audit.denied(self.plugin, call, "capability", f"{capability.value} is not granted")
        return Status.UNIMPLEMENTED

    def kv_get(self, key: bytes) -> tuple[int, bytes | None, int]:
        denied = self.require("get_shared_data", Capability.SHARED_KV)
        if denied is not None:
            return denied, None, 0
        value, cas = self.kv.get(key, (None, CREATE_IF_ABSENT_CAS))
        return Status.OK, value, cas

    def kv_set(self, key: bytes, value: bytes, cas: int) -> int:
        denied = self.require("set_shared_data", Capability.SHARED_KV)
        if denied is not None:
            return denied
        current = self.kv.get(key)
        if cas == CREATE_IF_ABSENT_CAS:
            if current is not None:
                return Status.CAS_MISMATCH
        elif cas and (current is None or current[1] != cas):
            return Status.CAS_MISMATCH
        self.kv[key] = (value, next_cas(current[1] if current else 0))
        return Status.OK

    def http_call(self) -> int:
        """Refused before any argument is looked at (no callout grant in this benchmark)."""
        denied = self.require("http_call", Capability.HTTP_CALLOUT)
        return Status.INTERNAL_FAILURE if denied is None else denied

    def denials(self) -> int:
        return sum(n for (_, call, _), n in self.audit.counts.items() if call == "http_call")


# ------------------------------------------------------------------ native column
class NativeFilter:
    """bench_filter's logic as native Python hooks over the host's own objects."""

    def __init__(self, host: PeerHost) -> None:
        self.host = host
        self.response_bytes = 0

    def on_request_headers(self, headers: HeaderMap) -> Action:
        headers.add(b"x-routeiq-seen", b"1" if headers.get(b"x-api-key") is not None else b"anonymous")
        return Action.CONTINUE

    def on_request_body(self, stream: HttpStream) -> Action:
        body = stream.request_body
        assert body is not None
        body[:] = bytes(body).replace(b"secret", b"******")
        return Action.CONTINUE

    def on_response_body(self, stream: HttpStream) -> Action:
        assert stream.response_body is not None
        self.response_bytes += len(bytes(stream.response_body))
        return Action.CONTINUE

    def on_response_trailers(self, trailers: HeaderMap) -> Action:
        trailers.add(TRAILER, str(self.response_bytes).encode())
        return Action.CONTINUE

    def on_response_headers(self) -> Action:
        status, value, cas = self.host.kv_get(COUNTER_KEY)
        if status == Status.OK:
            count = int(value) if value and value.isdigit() else 0
            self.host.kv_set(COUNTER_KEY, str(count + 1).encode(), cas)
        return Action.CONTINUE

    def on_log(self) -> None:
        self.host.http_call()


def native_cell(row: str, _: pytest.FixtureRequest) -> Cell:
    host = PeerHost("native")
    hooks = NativeFilter(host)
    stream = new_stream()
    headers = stream.request_headers
    if row == "request_headers":

        def hook() -> Any:
            headers.pairs = list(HEADERS)
            return hooks.on_request_headers(headers)

        return Cell(hook, lambda result, _: check_headers(result, headers))
    if row in BODIES:
        body = BODIES[row]

        def hook() -> Any:
            stream.request_body = bytearray(body)
            return hooks.on_request_body(stream)

        return Cell(hook, lambda result, _: check_body(result, stream, body))
    if row == "response_chunk":
        assert stream.response_trailers is not None
        trailers = stream.response_trailers

        def check(_: Any, calls: int) -> None:
            hooks.on_response_trailers(trailers)
            check_trailer(trailers, calls)

        return Cell(lambda: hooks.on_response_body(stream), check)
    if row == "kv_get_set":
        return Cell(hooks.on_response_headers, lambda _, calls: check_counter(host.kv[COUNTER_KEY][0], calls))
    return Cell(hooks.on_log, lambda _, calls: check_denials(host.denials(), calls))


# ---------------------------------------------------------------- what every cell asserts
def check_headers(result: Any, headers: HeaderMap) -> None:
    assert result == Action.CONTINUE
    assert headers.get(b"x-routeiq-seen") == b"1"
    assert len(headers) == len(HEADERS) + 1


def check_body(result: Any, stream: HttpStream, original: bytes) -> None:
    assert result in (Action.CONTINUE, None)
    assert bytes(stream.request_body or b"") == original.replace(b"secret", b"******") != original


def check_trailer(trailers: HeaderMap, calls: int) -> None:
    assert trailers.get(TRAILER) == str(len(CHUNK) * calls).encode(), (trailers.pairs, calls)


def check_counter(value: bytes | None, calls: int) -> None:
    assert value == str(calls).encode(), (value, calls)


def check_denials(denials: int, calls: int) -> None:
    assert denials == calls, (denials, calls)


# ------------------------------------------------------------ RouteIQ's host columns
def routeiq_cell(row: str, request: pytest.FixtureRequest, column: str) -> Cell:
    wasm: Path = request.getfixturevalue("modules")[column]
    runtime: WasmRuntime = request.getfixturevalue("runtime")
    name = wasm.stem
    policy = parse_policy({"plugins": {name: {"unpinned": True, "capabilities": sorted(c.value for c in GRANTED)}}}, "hook matrix policy")
    services = HostServices()
    # Default limits in every column: since bodies travel as byte-strings, the Python
    # guest's memory no longer grows per 64 KiB rewrite (with list<u8> it trapped at 16 MiB
    # after ~79 calls).
    plugin = load_plugin(PluginSpec(name, wasm, limits=SandboxLimits()), runtime, policy=policy, services=services)
    vm = plugin.start()
    stream = new_stream()
    context = vm.new_context(stream)
    cid = context.context_id
    vm.call("proxy_on_context_create", context, cid, vm.root.context_id)
    call = vm.call
    headers = stream.request_headers
    cell: Cell
    if row == "request_headers":

        def hook() -> Any:
            headers.pairs = list(HEADERS)
            return call("proxy_on_request_headers", context, cid, len(HEADERS), 1)

        cell = Cell(hook, lambda result, _: check_headers(result, headers))
    elif row in BODIES:
        body = BODIES[row]

        def hook() -> Any:
            stream.request_body = bytearray(body)
            return call("proxy_on_request_body", context, cid, len(body), 1)

        cell = Cell(hook, lambda result, _: check_body(result, stream, body))
    elif row == "response_chunk":
        assert stream.response_trailers is not None
        trailers = stream.response_trailers

        def check(_: Any, calls: int) -> None:
            call("proxy_on_response_trailers", context, cid, 0)
            check_trailer(trailers, calls)

        cell = Cell(lambda: call("proxy_on_response_body", context, cid, len(CHUNK), 0), check)
    elif row == "kv_get_set":
        namespace = plugin.admission.grant.namespace
        cell = Cell(
            lambda: call("proxy_on_response_headers", context, cid, len(RESPONSE_HEADERS), 0),
            lambda _, calls: check_counter(services.store.get(namespace, COUNTER_KEY.decode())[0], calls),
        )
    else:
        refused = {"proxy_http_call", "http-call"}  # core-module and component names of the call
        cell = Cell(
            lambda: call("proxy_on_log", context, cid),
            lambda _, calls: check_denials(sum(n for (p, c, _), n in services.audit.counts.items() if p == name and c in refused), calls),
        )
    cell.close = plugin.close
    return cell


# --------------------------------------------------------------- wasmtime-py column
class WasmtimePyHost:
    """proxy-wasm host functions for the Rust guest through wasmtime-py's default path:
    `Linker.define_func` (checked, i32 arguments arrive signed) and `Memory.read/write`."""

    def __init__(self, store: wasmtime.Store, stream: HttpStream, host: PeerHost) -> None:
        self.store = store
        self.stream = stream
        self.host = host
        self.memory: wasmtime.Memory | None = None
        self.alloc: wasmtime.Func | None = None
        self.maps = {
            MapType.HTTP_REQUEST_HEADERS: stream.request_headers,
            MapType.HTTP_RESPONSE_HEADERS: stream.response_headers,
            MapType.HTTP_RESPONSE_TRAILERS: stream.response_trailers,
        }

    def _read(self, ptr: int, size: int) -> bytes:
        assert self.memory is not None
        return bytes(self.memory.read(self.store, ptr, ptr + size))

    def _write_u32(self, ptr: int, value: int) -> None:
        assert self.memory is not None
        self.memory.write(self.store, (value & 0xFFFFFFFF).to_bytes(4, "little"), ptr)

    def _return(self, data: bytes, ret_ptr: int, ret_size: int) -> int:
        assert self.memory is not None and self.alloc is not None
        ptr = self.alloc(self.store, len(data)) if data else 0
        if data:
            self.memory.write(self.store, data, ptr)
        self._write_u32(ret_ptr, ptr)
        self._write_u32(ret_size, len(data))
        return Status.OK

    def _buffer(self, buffer_type: int) -> tuple[int | None, bytearray | None]:
        gate = {BufferType.HTTP_REQUEST_BODY: Capability.REQUEST_BODY, BufferType.HTTP_RESPONSE_BODY: Capability.RESPONSE_BODY}.get(buffer_type)  # type: ignore[call-overload]
        if gate is None:
            return Status.BAD_ARGUMENT, None
        denied = self.host.require("buffer", gate)
        if denied is not None:
            return denied, None
        return None, self.stream.request_body if buffer_type == BufferType.HTTP_REQUEST_BODY else self.stream.response_body

    def proxy_log(self, level: int, ptr: int, size: int) -> int:
        return Status.OK

    def proxy_get_header_map_value(self, map_type: int, key: int, key_size: int, ret_ptr: int, ret_size: int) -> int:
        hmap = self.maps.get(map_type)  # type: ignore[call-overload]
        value = hmap.get(self._read(key, key_size)) if hmap is not None else None
        return Status.NOT_FOUND if value is None else self._return(value, ret_ptr, ret_size)

    def proxy_add_header_map_value(self, map_type: int, key: int, key_size: int, value: int, value_size: int) -> int:
        hmap = self.maps.get(map_type)  # type: ignore[call-overload]
        if hmap is None:
            return Status.NOT_FOUND
        hmap.add(self._read(key, key_size), self._read(value, value_size))
        return Status.OK

    def proxy_get_buffer_bytes(self, buffer_type: int, start: int, max_size: int, ret_ptr: int, ret_size: int) -> int:
        status, buf = self._buffer(buffer_type)
        if buf is None:
            return status or Status.NOT_FOUND
        return self._return(bytes(buf[start : start + (max_size & 0xFFFFFFFF)]), ret_ptr, ret_size)

    def proxy_set_buffer_bytes(self, buffer_type: int, start: int, size: int, data: int, data_size: int) -> int:
        value = self._read(data, data_size)
        status, buf = self._buffer(buffer_type)
        if buf is None:
            return status or Status.NOT_FOUND
        buf[start : start + (size & 0xFFFFFFFF)] = value
        return Status.OK

    def proxy_get_shared_data(self, key: int, key_size: int, ret_value: int, ret_size: int, ret_cas: int) -> int:
        status, value, cas = self.host.kv_get(self._read(key, key_size))
        if status != Status.OK:
            return status
        self._write_u32(ret_cas, cas)
        return Status.NOT_FOUND if value is None else self._return(value, ret_value, ret_size)

    def proxy_set_shared_data(self, key: int, key_size: int, value: int, value_size: int, cas: int) -> int:
        return self.host.kv_set(self._read(key, key_size), self._read(value, value_size), cas & 0xFFFFFFFF)

    def proxy_http_call(self, *_: int) -> int:
        return self.host.http_call()


def _stub(results: int) -> Callable[..., Any]:
    """An import the rows never reach: answers zeros."""
    return lambda *_: None if results == 0 else (0 if results == 1 else (0,) * results)


def wasmtime_py_cell(row: str, request: pytest.FixtureRequest) -> Cell:
    wasm: Path = request.getfixturevalue("guests")["bench_filter"]
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, str(wasm))
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    stream = new_stream()
    host = PeerHost("bench_filter")
    funcs = WasmtimePyHost(store, stream, host)
    for imp in module.imports:
        functype = imp.type
        assert isinstance(functype, wasmtime.FuncType), f"unexpected import {imp.module}.{imp.name}"
        fn = getattr(funcs, imp.name or "", None) if imp.module == "env" else None
        linker.define_func(imp.module, imp.name or "", functype, fn or _stub(len(functype.results)))
    instance = linker.instantiate(store, module)
    exports = instance.exports(store)
    memory, alloc = exports["memory"], exports["proxy_on_memory_allocate"]
    assert isinstance(memory, wasmtime.Memory) and isinstance(alloc, wasmtime.Func)
    funcs.memory, funcs.alloc = memory, alloc

    def export(name: str) -> wasmtime.Func:
        fn = exports[name]
        assert isinstance(fn, wasmtime.Func)
        return fn

    export("_initialize")(store)
    export("proxy_on_context_create")(store, 1, 0)
    export("proxy_on_vm_start")(store, 1, 0)
    export("proxy_on_configure")(store, 1, 0)
    export("proxy_on_context_create")(store, 2, 1)
    headers = stream.request_headers
    if row == "request_headers":
        on_headers = export("proxy_on_request_headers")

        def hook() -> Any:
            headers.pairs = list(HEADERS)
            return on_headers(store, 2, len(HEADERS), 1)

        return Cell(hook, lambda result, _: check_headers(result, headers))
    if row in BODIES:
        body, on_body = BODIES[row], export("proxy_on_request_body")

        def hook() -> Any:
            stream.request_body = bytearray(body)
            return on_body(store, 2, len(body), 1)

        return Cell(hook, lambda result, _: check_body(result, stream, body))
    if row == "response_chunk":
        on_chunk, on_trailers = export("proxy_on_response_body"), export("proxy_on_response_trailers")
        assert stream.response_trailers is not None
        trailers = stream.response_trailers

        def check(_: Any, calls: int) -> None:
            on_trailers(store, 2, 0)
            check_trailer(trailers, calls)

        return Cell(lambda: on_chunk(store, 2, len(CHUNK), 0), check)
    if row == "kv_get_set":
        on_response_headers = export("proxy_on_response_headers")
        return Cell(lambda: on_response_headers(store, 2, len(RESPONSE_HEADERS), 0), lambda _, calls: check_counter(host.kv[COUNTER_KEY][0], calls))
    on_log = export("proxy_on_log")
    return Cell(lambda: on_log(store, 2), lambda _, calls: check_denials(host.denials(), calls))


# -------------------------------------------------------------------- Extism column
def build_extism_guest(root: Path) -> Path:
    """bench/extism_guest/bench_filter.c with the C compiler RouteIQ's C toolchain picks
    (zig cc from the ziglang wheel first), cached by content hash under .cache/extism/."""
    compiler = ensure_c_compiler(root / ".cache" / "guests")
    flags = [*compiler.target, *COMMON_FLAGS]
    source = EXTISM_SOURCE.read_bytes()
    key = hashlib.sha256("\0".join([compiler.version, *flags]).encode() + b"\0" + source).hexdigest()[:20]
    out = root / ".cache" / "extism" / f"bench_filter-{key}.wasm"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.wasm")
        result = subprocess.run([*compiler.command, *flags, str(EXTISM_SOURCE), "-o", str(tmp)], capture_output=True, text=True, env=compiler.env(root / ".cache" / "guests"))
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BuildFailed(f"Extism guest build failed ({compiler.version}):\n{result.stderr.strip()}")
        tmp.rename(out)
    return out


def extism_host_functions(host: PeerHost) -> list[Any]:
    """kv_get, kv_set and http_call for the Extism guest, through the SDK's host-function
    API (explicit signatures; the arguments are Extism memory handles)."""
    import extism

    i32, i64, user = extism.ValType.I32, extism.ValType.I64, "extism:host/user"

    @extism.host_fn(name="kv_get", namespace=user, signature=([i64], [i64]))
    def kv_get(plugin: Any, params: list[Any], results: list[Any]) -> None:
        status, value, cas = host.kv_get(plugin.input_bytes(params[0]))
        if status != Status.OK:
            results[0].value = 0
            return
        plugin.return_bytes(results[0], cas.to_bytes(8, "little") + (value or b""))

    @extism.host_fn(name="kv_set", namespace=user, signature=([i64, i64, i32], [i32]))
    def kv_set(plugin: Any, params: list[Any], results: list[Any]) -> None:
        key, value = plugin.input_bytes(params[0]), plugin.input_bytes(params[1])
        results[0].value = int(host.kv_set(key, value, params[2].value & 0xFFFFFFFF))

    @extism.host_fn(name="http_call", namespace=user, signature=([i64, i64, i64, i32], [i32]))
    def http_call(plugin: Any, params: list[Any], results: list[Any]) -> None:
        results[0].value = int(host.http_call())

    return [kv_get, kv_set, http_call]


def extism_cell(row: str, request: pytest.FixtureRequest) -> Cell:
    extism = pytest.importorskip("extism", reason="the Extism column needs requirements-bench.lock (./dev bench installs it)")
    wasm: Path = request.getfixturevalue("extism_wasm")
    host = PeerHost("bench_filter")
    plugin = extism.Plugin(wasm.read_bytes(), wasi=False, functions=extism_host_functions(host))
    call = plugin.call
    stream = new_stream()
    headers = stream.request_headers
    cell: Cell
    if row == "request_headers":

        def hook() -> Any:
            headers.pairs = list(HEADERS)
            for name, value in decode_map(call("request_headers", headers.serialize())):
                headers.add(name, value)
            return Action.CONTINUE

        cell = Cell(hook, lambda result, _: check_headers(result, headers))
    elif row in BODIES:
        body = BODIES[row]

        def hook() -> Any:
            stream.request_body = bytearray(body)
            stream.request_body[:] = call("request_body", bytes(stream.request_body))
            return Action.CONTINUE

        cell = Cell(hook, lambda result, _: check_body(result, stream, body))
    elif row == "response_chunk":
        chunk = stream.response_body
        assert chunk is not None

        def hook() -> Any:
            return int.from_bytes(call("response_chunk", bytes(chunk)), "little")

        def check(total: Any, calls: int) -> None:
            assert total == len(CHUNK) * calls, (total, calls)

        cell = Cell(hook, check)
    elif row == "kv_get_set":
        cell = Cell(lambda: call("kv_get_set", b""), lambda _, calls: check_counter(host.kv[COUNTER_KEY][0], calls))
    else:
        cell = Cell(lambda: call("denied_call", b""), lambda _, calls: check_denials(host.denials(), calls))
    cell.close = lambda: plugin.__exit__(None, None, None)
    return cell


# ----------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def modules(all_guests: dict[str, Path]) -> dict[str, Path]:
    return {column: all_guests[name] for column, name in GUESTS.items()}


@pytest.fixture(scope="module")
def extism_wasm() -> Path:
    return build_extism_guest(ROOT)


def make_cell(row: str, column: str, request: pytest.FixtureRequest) -> Cell:
    if column == "native":
        return native_cell(row, request)
    if column == "wasmtime-py":
        return wasmtime_py_cell(row, request)
    if column == "extism":
        return extism_cell(row, request)
    return routeiq_cell(row, request, column)


@pytest.mark.benchmark(group="hook-matrix")
@pytest.mark.parametrize(("row", "column"), [pytest.param(r, c, id=f"{r}-{c}") for r in ROWS for c in COLUMNS])
def test_hook(benchmark, request: pytest.FixtureRequest, row: str, column: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"hook-matrix: {row}"  # pytest-benchmark's own tables then compare columns per row
    cell = make_cell(row, column, request)
    calls = 0
    hook = cell.hook

    def counted() -> Any:  # the checks compare counters with the number of calls
        nonlocal calls
        calls += 1
        return hook()

    try:
        result = benchmark(counted)
        cell.check(result, calls)
    finally:
        cell.close()
