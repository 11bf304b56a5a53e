"""proxy_call_foreign_function through a real gateway (issue #13 item 11): a WAT filter
calls Envoy's foreign functions on a request header and reports what it got back as
request headers the embedded upstream echoes."""

from __future__ import annotations

from pathlib import Path

import httpx
import wasmtime

from support import plugin

# On request headers: compress the value of x-data, uncompress the result (each lands in
# a guest allocation, proxy_on_memory_allocate), add it back as x-roundtrip; then call an
# unknown name, uncompress bytes that are not zlib and clear_route_cache, and report each
# status as one digit. The allocator counts its calls.
FILTER = """
(module
  (import "env" "proxy_call_foreign_function" (func $ff (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 256) "x-data")
  (data (i32.const 272) "compress")
  (data (i32.const 288) "uncompress")
  (data (i32.const 304) "x-roundtrip")
  (data (i32.const 320) "no_such_function")
  (data (i32.const 352) "x-unknown-status")
  (data (i32.const 384) "x-bad-status")
  (data (i32.const 400) "not zlib")
  (data (i32.const 416) "clear_route_cache")
  (data (i32.const 448) "x-clear-status")
  (data (i32.const 464) "x-compress-status")
  (data (i32.const 496) "x-allocations")
  (global $next (mut i32) (i32.const 4096))
  (global $allocations (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (global.set $allocations (i32.add (global.get $allocations) (i32.const 1)))
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $digit (param $at i32) (param $status i32)
    (i32.store8 (local.get $at) (i32.add (local.get $status) (i32.const 48))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (call $get (i32.const 0) (i32.const 256) (i32.const 6) (i32.const 16) (i32.const 20)) (then (return (i32.const 0))))
    ;; compress(value) -> [24], [28]
    (call $digit (i32.const 515) (call $ff (i32.const 272) (i32.const 8) (i32.load (i32.const 16)) (i32.load (i32.const 20)) (i32.const 24) (i32.const 28)))
    (drop (call $add (i32.const 0) (i32.const 464) (i32.const 17) (i32.const 515) (i32.const 1)))
    ;; uncompress(compressed) -> [32], [36]
    (drop (call $ff (i32.const 288) (i32.const 10) (i32.load (i32.const 24)) (i32.load (i32.const 28)) (i32.const 32) (i32.const 36)))
    (drop (call $add (i32.const 0) (i32.const 304) (i32.const 11) (i32.load (i32.const 32)) (i32.load (i32.const 36))))
    (call $digit (i32.const 512) (call $ff (i32.const 320) (i32.const 16) (i32.const 0) (i32.const 0) (i32.const 40) (i32.const 44)))
    (drop (call $add (i32.const 0) (i32.const 352) (i32.const 16) (i32.const 512) (i32.const 1)))
    (call $digit (i32.const 513) (call $ff (i32.const 288) (i32.const 10) (i32.const 400) (i32.const 8) (i32.const 40) (i32.const 44)))
    (drop (call $add (i32.const 0) (i32.const 384) (i32.const 12) (i32.const 513) (i32.const 1)))
    (call $digit (i32.const 514) (call $ff (i32.const 416) (i32.const 17) (i32.const 0) (i32.const 0) (i32.const 40) (i32.const 44)))
    (drop (call $add (i32.const 0) (i32.const 448) (i32.const 14) (i32.const 514) (i32.const 1)))
    (call $digit (i32.const 516) (global.get $allocations))
    (drop (call $add (i32.const 0) (i32.const 496) (i32.const 13) (i32.const 516) (i32.const 1)))
    (i32.const 0)))
"""


def test_a_filter_round_trips_compress_and_uncompress_and_reads_envoys_statuses(make_app, live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    module = tmp_path / "foreign.wasm"
    module.write_bytes(wasmtime.wat2wasm(FILTER))
    base = live(make_app([plugin("foreign", module)], policy={"plugins": {"foreign": {"unpinned": True}}}))  # nothing granted: the calls are ungated
    data = "hello hello hello hello, from a foreign function"
    response = httpx.get(base + "/echo", headers={"x-data": data}, timeout=30)
    assert response.status_code == 200
    headers = dict((k, v) for k, v in response.json()["headers"] if k.startswith("x-"))
    assert headers["x-roundtrip"] == data
    assert headers["x-compress-status"] == "0"  # OK
    assert headers["x-unknown-status"] == "1"  # NOT_FOUND
    assert headers["x-bad-status"] == "3"  # SERIALIZATION_FAILURE, as Envoy answers for bytes zlib cannot inflate
    assert headers["x-clear-status"] == "0"  # OK: a documented no-op (no route table yet)
    assert headers["x-allocations"] == "3"  # the header value, the compressed and the uncompressed bytes
