"""Host-call semantics the probe does not reach, driven against a real VM's memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import BufferType, MapType, Status, StreamType, decode_map
from routeiq.hostcalls.proxy_abi import build_host_functions
from routeiq.hostcalls.state import ContextState, HeaderMap, HostEnv, HttpStream, PluginIdentity
from routeiq.policy.grants import Grant
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.limits import SandboxLimits
from routeiq.runtime.vm import WasmVM
from routeiq.runtime.wasm_runtime import WasmRuntime

# A guest with one page of memory and a bump allocator from 1024 upwards.
GUEST = """
(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (local.get $p)))
"""


class Guest:
    def __init__(self, env: HostEnv, vm: WasmVM, table: dict) -> None:  # type: ignore[type-arg]
        self.env, self.vm, self.table = env, vm, table
        self._scratch = 64

    def call(self, name: str, *args: int) -> int:
        """Call a host function as the guest would (the linked implementation)."""
        return self.table[("env", name)].impl(*args)

    def put(self, data: bytes) -> tuple[int, int]:
        ptr = self._scratch
        self.vm.write(ptr, data)
        self._scratch += len(data) + 8
        return ptr, len(data)

    def returned(self, data_slot: int = 8, size_slot: int = 12) -> bytes:
        return self.vm.read(self.vm.read_u32(data_slot), self.vm.read_u32(size_slot))


@pytest.fixture
def guest(tmp_path: Path):  # type: ignore[no-untyped-def]
    runtime = WasmRuntime(EngineSettings(), None)
    module = wasmtime.Module(runtime.engine, wasmtime.wat2wasm(GUEST))
    vm = WasmVM(runtime.engine, module, SandboxLimits(), runtime.settings.epoch_tick_ms)
    env = HostEnv(PluginIdentity(name="unit", plugin_config=b"cfg"), grant=Grant(plugin="unit", capabilities=frozenset(Capability)), vm=vm)
    table = build_host_functions(env)
    vm.instantiate(table)
    vm.set_allocator(vm.function("proxy_on_memory_allocate"))  # type: ignore[arg-type]
    stream = HttpStream(request_headers=HeaderMap([(b":path", b"/a"), (b"x-one", b"1")]))
    env.active = ContextState(context_id=2, stream=stream)
    env.contexts[2] = env.active
    yield Guest(env, vm, table)
    vm.close()
    runtime.close()


def test_set_property_is_visible_to_later_reads(guest: Guest) -> None:
    path, value = guest.put(b"routeiq\0tenant"), guest.put(b"acme")
    assert guest.call("proxy_set_property", *path, *value) == Status.OK
    assert guest.call("proxy_get_property", *guest.put(b"routeiq.tenant"), 8, 12) == Status.OK
    assert guest.returned() == b"acme"
    assert guest.call("proxy_set_property", *guest.put(b""), *value) == Status.BAD_ARGUMENT


def test_buffer_status_and_read_only_buffers(guest: Guest) -> None:
    guest.env.stream.request_body = bytearray(b"hello")  # type: ignore[union-attr]
    assert guest.call("proxy_get_buffer_status", BufferType.HTTP_REQUEST_BODY, 8, 12) == Status.OK
    assert guest.vm.read_u32(8) == 5
    assert guest.call("proxy_get_buffer_bytes", BufferType.HTTP_REQUEST_BODY, 1, 3, 8, 12) == Status.OK
    assert guest.returned() == b"ell"
    assert guest.call("proxy_get_buffer_bytes", BufferType.HTTP_REQUEST_BODY, 6, 1, 8, 12) == Status.BAD_ARGUMENT
    assert guest.call("proxy_set_buffer_bytes", BufferType.HTTP_REQUEST_BODY, 5, 0, *guest.put(b"!")) == Status.OK
    assert guest.env.stream.request_body == bytearray(b"hello!")  # type: ignore[union-attr]
    assert guest.call("proxy_set_buffer_bytes", BufferType.PLUGIN_CONFIGURATION, 0, 0, *guest.put(b"x")) == Status.BAD_ARGUMENT
    assert guest.call("proxy_get_buffer_status", BufferType.HTTP_RESPONSE_BODY, 8, 12) == Status.NOT_FOUND
    assert guest.call("proxy_get_buffer_status", 42, 8, 12) == Status.BAD_ARGUMENT


def test_header_maps_outside_their_phase(guest: Guest) -> None:
    key, value = guest.put(b"x-new"), guest.put(b"v")
    # Response headers do not exist yet during the request.
    assert guest.call("proxy_get_header_map_value", MapType.HTTP_RESPONSE_HEADERS, *key, 8, 12) == Status.NOT_FOUND
    assert guest.call("proxy_add_header_map_value", MapType.HTTP_RESPONSE_HEADERS, *key, *value) == Status.BAD_ARGUMENT
    # Once forwarded, request headers are read-only.
    guest.env.stream.request_headers.writable = False  # type: ignore[union-attr]
    assert guest.call("proxy_add_header_map_value", MapType.HTTP_REQUEST_HEADERS, *key, *value) == Status.BAD_ARGUMENT
    assert guest.call("proxy_get_header_map_pairs", MapType.HTTP_REQUEST_HEADERS, 8, 12) == Status.OK
    assert decode_map(guest.returned()) == [(b":path", b"/a"), (b"x-one", b"1")]


def test_repeated_headers_join_with_commas_and_replace_collapses_them(guest: Guest) -> None:
    name = guest.put(b"X-Dup")
    guest.call("proxy_add_header_map_value", MapType.HTTP_REQUEST_HEADERS, *name, *guest.put(b"a"))
    guest.call("proxy_add_header_map_value", MapType.HTTP_REQUEST_HEADERS, *name, *guest.put(b"b"))
    assert guest.call("proxy_get_header_map_value", MapType.HTTP_REQUEST_HEADERS, *name, 8, 12) == Status.OK
    assert guest.returned() == b"a,b"
    guest.call("proxy_replace_header_map_value", MapType.HTTP_REQUEST_HEADERS, *name, *guest.put(b"c"))
    assert guest.env.stream.request_headers.pairs[-1] == (b"x-dup", b"c")  # type: ignore[union-attr]
    assert [k for k, _ in guest.env.stream.request_headers.pairs].count(b"x-dup") == 1  # type: ignore[union-attr]


def test_continue_calls_of_abi_0_2_0_and_route_cache(guest: Guest) -> None:
    assert guest.call("proxy_continue_request") == Status.OK
    assert guest.call("proxy_continue_response") == Status.OK
    assert guest.env.active.resume_requested == {StreamType.HTTP_REQUEST, StreamType.HTTP_RESPONSE}  # type: ignore[union-attr]
    assert guest.call("proxy_clear_route_cache") == Status.OK
    assert guest.call("proxy_continue_stream", StreamType.DOWNSTREAM) == Status.UNIMPLEMENTED


def test_local_response_validation(guest: Guest) -> None:
    details, body, headers = guest.put(b"d"), guest.put(b"b"), guest.put(b"")
    assert guest.call("proxy_send_local_response", 99, *details, *body, *headers, 0) == Status.BAD_ARGUMENT
    assert guest.call("proxy_send_local_response", 200, *details, *body, *guest.put(b"\x05\x00\x00\x00"), 0) == Status.BAD_ARGUMENT
    guest.env.stream.end_ns = 1  # type: ignore[union-attr]  # the exchange is over (on_done, on_log)
    assert guest.call("proxy_send_local_response", 200, *details, *body, *headers, 0) == Status.BAD_ARGUMENT
    assert guest.env.stream.local_response is None  # type: ignore[union-attr]


def test_proxy_done_releases_a_context_waiting_for_it(guest: Guest) -> None:
    woken = []
    guest.env.active.awaiting_done = True  # type: ignore[union-attr]
    guest.env.active.wakeup = lambda: woken.append(True)  # type: ignore[union-attr]
    assert guest.call("proxy_done") == Status.OK
    assert guest.env.active.done_called and woken == [True]  # type: ignore[union-attr]


# ------------------------------------------------ foreign functions (issue #13 item 11)
def _foreign(guest: Guest, name: bytes, arguments: bytes) -> tuple[int, bytes]:
    status = guest.call("proxy_call_foreign_function", *guest.put(name), *guest.put(arguments), 8, 12)
    return status, guest.returned() if status == Status.OK else b""


def test_foreign_compress_and_uncompress_are_zlibs(guest: Guest) -> None:
    import zlib

    data = b"hello hello hello hello, foreign functions"
    status, compressed = _foreign(guest, b"compress", data)
    assert (status, compressed) == (Status.OK, zlib.compress(data))  # zlib's compress(): zlib format, default level
    assert _foreign(guest, b"uncompress", compressed) == (Status.OK, data)
    assert _foreign(guest, b"uncompress", compressed + b"trailing") == (Status.OK, data)  # as uncompress(): the stream's end ends it
    assert _foreign(guest, b"compress", b"")[0] == Status.OK and _foreign(guest, b"uncompress", zlib.compress(b"")) == (Status.OK, b"")
    # Envoy answers SerializationFailure for what zlib cannot inflate: garbage, truncated, empty.
    for bad in (b"not zlib at all", compressed[:-3], b""):
        assert _foreign(guest, b"uncompress", bad)[0] == Status.SERIALIZATION_FAILURE


def test_foreign_uncompress_stops_at_the_plugins_buffer_limit(guest: Guest) -> None:
    import zlib

    guest.env.plugin.max_buffer_bytes = 4096
    assert _foreign(guest, b"uncompress", zlib.compress(b"a" * 4096)) == (Status.OK, b"a" * 4096)
    bomb = zlib.compress(b"a" * 10_000_000)  # 9.7 KB that inflates to 10 MB
    assert _foreign(guest, b"uncompress", bomb)[0] == Status.SERIALIZATION_FAILURE
    assert guest.env.services.audit.counts[("unit", "proxy_call_foreign_function", "foreign_output_limit")] == 1


def test_foreign_clear_route_cache_and_unknown_names(guest: Guest) -> None:
    assert _foreign(guest, b"clear_route_cache", b"") == (Status.OK, b"")
    assert guest.vm.read_u32(12) == 0  # nothing returned, nothing allocated
    for name in (b"verify_signature", b"expr_create", b"set_envoy_filter_state", b"no_such_function", b"\xff"):
        assert _foreign(guest, name, b"x")[0] == Status.NOT_FOUND
    # A bad pointer is refused before anything runs, whatever the name (the linked function
    # answers INVALID_MEMORY_ACCESS for it: tests/test_hostcalls.py, hostile pointers).
    from routeiq.runtime.vm import GuestMemoryError

    with pytest.raises(GuestMemoryError):
        guest.call("proxy_call_foreign_function", *guest.put(b"compress"), 70_000, 4, 8, 12)
    with pytest.raises(GuestMemoryError):
        guest.call("proxy_call_foreign_function", *guest.put(b"compress"), *guest.put(b"x"), 70_000, 12)
