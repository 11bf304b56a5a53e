"""WASI preview1 as Envoy's host offers it: every function a toolchain may import links,
poll_oneoff answers zero events, a function imported twice links, stdout/stderr reach the
plugin log one line per record, and an import the host does not know is still refused."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import wasmtime

from routeiq.dispatch.plugin import ProxyWasmPlugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.errors import PluginLoadError
from routeiq.runtime.wasm_runtime import WasmRuntime

# wasi_snapshot_preview1 from WASI's witx (phases/snapshot/witx/wasi_snapshot_preview1.witx):
# name -> (params, results). Written out here, independently of the host's table.
PREVIEW1 = {
    "args_get": ("i32 i32", "i32"),
    "args_sizes_get": ("i32 i32", "i32"),
    "environ_get": ("i32 i32", "i32"),
    "environ_sizes_get": ("i32 i32", "i32"),
    "clock_res_get": ("i32 i32", "i32"),
    "clock_time_get": ("i32 i64 i32", "i32"),
    "fd_advise": ("i32 i64 i64 i32", "i32"),
    "fd_allocate": ("i32 i64 i64", "i32"),
    "fd_close": ("i32", "i32"),
    "fd_datasync": ("i32", "i32"),
    "fd_fdstat_get": ("i32 i32", "i32"),
    "fd_fdstat_set_flags": ("i32 i32", "i32"),
    "fd_fdstat_set_rights": ("i32 i64 i64", "i32"),
    "fd_filestat_get": ("i32 i32", "i32"),
    "fd_filestat_set_size": ("i32 i64", "i32"),
    "fd_filestat_set_times": ("i32 i64 i64 i32", "i32"),
    "fd_pread": ("i32 i32 i32 i64 i32", "i32"),
    "fd_prestat_get": ("i32 i32", "i32"),
    "fd_prestat_dir_name": ("i32 i32 i32", "i32"),
    "fd_pwrite": ("i32 i32 i32 i64 i32", "i32"),
    "fd_read": ("i32 i32 i32 i32", "i32"),
    "fd_readdir": ("i32 i32 i32 i64 i32", "i32"),
    "fd_renumber": ("i32 i32", "i32"),
    "fd_seek": ("i32 i64 i32 i32", "i32"),
    "fd_sync": ("i32", "i32"),
    "fd_tell": ("i32 i32", "i32"),
    "fd_write": ("i32 i32 i32 i32", "i32"),
    "path_create_directory": ("i32 i32 i32", "i32"),
    "path_filestat_get": ("i32 i32 i32 i32 i32", "i32"),
    "path_filestat_set_times": ("i32 i32 i32 i32 i64 i64 i32", "i32"),
    "path_link": ("i32 i32 i32 i32 i32 i32 i32", "i32"),
    "path_open": ("i32 i32 i32 i32 i32 i64 i64 i32 i32", "i32"),
    "path_readlink": ("i32 i32 i32 i32 i32 i32", "i32"),
    "path_remove_directory": ("i32 i32 i32", "i32"),
    "path_rename": ("i32 i32 i32 i32 i32 i32", "i32"),
    "path_symlink": ("i32 i32 i32 i32 i32", "i32"),
    "path_unlink_file": ("i32 i32 i32", "i32"),
    "poll_oneoff": ("i32 i32 i32 i32", "i32"),
    "proc_exit": ("i32", ""),
    "proc_raise": ("i32", "i32"),
    "sched_yield": ("", "i32"),
    "random_get": ("i32 i32", "i32"),
    "sock_accept": ("i32 i32 i32", "i32"),
    "sock_recv": ("i32 i32 i32 i32 i32 i32", "i32"),
    "sock_send": ("i32 i32 i32 i32 i32", "i32"),
    "sock_shutdown": ("i32 i32", "i32"),
}
ENOSYS, EBADF = 52, 8


@pytest.fixture
def runtime():  # type: ignore[no-untyped-def]
    rt = WasmRuntime(EngineSettings(), None)
    yield rt
    rt.close()


def load(runtime: WasmRuntime, tmp_path: Path, wat: str, name: str = "wasi") -> ProxyWasmPlugin:
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm(wat))
    plugin = ProxyWasmPlugin(PluginSpec(name, path), runtime)
    plugin.start()
    return plugin


def _import(name: str, alias: str = "") -> str:
    params, results = PREVIEW1[name]
    sig = (f"(param {params})" if params else "") + (f" (result {results})" if results else "")
    return f'(import "wasi_snapshot_preview1" "{name}" (func ${alias or name} {sig}))'


def test_every_preview1_function_links(runtime: WasmRuntime, tmp_path: Path) -> None:
    imports = "\n".join(_import(name) for name in PREVIEW1)
    plugin = load(runtime, tmp_path, f'(module {imports} (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))')
    assert plugin.state == "ready"


@pytest.mark.parametrize(
    ("call", "args", "errno"),
    [
        ("fd_fdstat_set_flags", "(i32.const 1) (i32.const 0)", ENOSYS),  # Envoy's answers
        ("fd_read", "(i32.const 0) (i32.const 64) (i32.const 1) (i32.const 72)", ENOSYS),
        ("fd_prestat_get", "(i32.const 3) (i32.const 64)", EBADF),  # no preopens: libc's scan ends
        ("path_open", "(i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 64)", ENOSYS),
        ("sock_accept", "(i32.const 3) (i32.const 0) (i32.const 64)", ENOSYS),
        ("poll_oneoff", "(i32.const 128) (i32.const 256) (i32.const 1) (i32.const 64)", 0),
        ("fd_close", "(i32.const 1)", 0),
    ],
)
def test_a_call_answers_the_errno_envoy_answers(runtime: WasmRuntime, tmp_path: Path, call: str, args: str, errno: int) -> None:
    # proxy_on_vm_start returns the errno + 1 (0 would refuse the VM) and leaves nevents at 64.
    wat = f"""(module {_import(call, "f")}
      (memory (export "memory") 1) (data (i32.const 64) "\\ff\\ff\\ff\\ff")
      (func (export "proxy_abi_version_0_2_1"))
      (global $errno (mut i32) (i32.const -1))
      (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (global.set $errno (call $f {args})) (i32.const 1))
      (func (export "errno") (result i32) (global.get $errno))
      (func (export "slot") (result i32) (i32.load (i32.const 64))))"""
    plugin = load(runtime, tmp_path, wat)
    vm = plugin.current_vm().vm
    assert vm.function("errno")() == errno
    if call == "poll_oneoff":
        assert vm.function("slot")() == 0  # zero events, at once: nothing can be waited on


def test_a_function_imported_twice_links(runtime: WasmRuntime, tmp_path: Path) -> None:
    wat = f"""(module {_import("fd_write", "w1")} {_import("fd_write", "w2")}
      (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"""
    assert load(runtime, tmp_path, wat).state == "ready"


def test_an_unknown_import_is_still_refused_by_name(runtime: WasmRuntime, tmp_path: Path) -> None:
    wat = """(module (import "wasi_snapshot_preview1" "fd_teleport" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"""
    with pytest.raises(PluginLoadError, match=r"wasi_snapshot_preview1\.fd_teleport \(unknown host function\)"):
        load(runtime, tmp_path, wat)


def test_stdout_written_in_pieces_is_logged_one_line_per_record(runtime: WasmRuntime, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Three writes "pan", "ic: x\nsec", "ond" then proc_exit: two records, "panic: x" and
    # "second" (the unfinished line is flushed when the guest exits).
    wat = f"""(module {_import("fd_write")} {_import("proc_exit")}
      (memory (export "memory") 1)
      (data (i32.const 100) "panic: x\\nsecond")
      (func (export "proxy_abi_version_0_2_1"))
      (func $put (param $at i32) (param $len i32)
        (i32.store (i32.const 0) (local.get $at)) (i32.store (i32.const 4) (local.get $len))
        (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8))))
      (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (call $put (i32.const 100) (i32.const 3)) (call $put (i32.const 103) (i32.const 9))
        (call $put (i32.const 112) (i32.const 3)) (call $proc_exit (i32.const 2)) (i32.const 1)))"""
    with caplog.at_level(logging.INFO, logger="routeiq.plugin.wasi"), pytest.raises(Exception, match="proc_exit"):
        load(runtime, tmp_path, wat)
    records = [r.getMessage() for r in caplog.records if r.name == "routeiq.plugin.wasi"]
    assert records == ["panic: x", "second"]
