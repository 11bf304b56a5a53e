"""Runtime: module cache, load-time refusal, bounded instantiation, typed traps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import wasmtime

from routeiq.dispatch.plugin import ProxyWasmPlugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.errors import DeadlineExceeded, FuelExhausted, PluginLoadError
from routeiq.runtime.limits import SandboxLimits
from routeiq.runtime.wasm_runtime import WasmRuntime


@pytest.fixture
def runtime(tmp_path: Path):  # type: ignore[no-untyped-def]
    rt = WasmRuntime(EngineSettings(), tmp_path / "cache")
    yield rt
    rt.close()


def wat_module(tmp_path: Path, wat: str, name: str = "m.wasm") -> Path:
    path = tmp_path / name
    path.write_bytes(wasmtime.wat2wasm(wat))
    return path


def test_compiled_modules_are_cached_across_runtimes(tmp_path: Path, guests: dict[str, Path]) -> None:
    cache = tmp_path / "cache"
    first = WasmRuntime(EngineSettings(), cache)
    ProxyWasmPlugin(PluginSpec("tagger", guests["tagger"]), first)
    assert (first.cache.misses, first.cache.hits) == (1, 0)
    first.close()
    entries = list(cache.glob("*.cwasm"))
    assert len(entries) == 1

    second = WasmRuntime(EngineSettings(), cache)  # a restart
    plugin = ProxyWasmPlugin(PluginSpec("tagger", guests["tagger"]), second)
    assert (second.cache.misses, second.cache.hits) == (0, 1)
    plugin.start()  # a deserialized module really runs
    second.close()

    # Different engine settings produce different code: a different cache key.
    third = WasmRuntime(EngineSettings(max_wasm_stack_bytes=256 * 1024), cache)
    ProxyWasmPlugin(PluginSpec("tagger", guests["tagger"]), third)
    assert third.cache.misses == 1
    third.close()
    assert len(list(cache.glob("*.cwasm"))) == 2


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path, guests: dict[str, Path]) -> None:
    cache = tmp_path / "cache"
    rt = WasmRuntime(EngineSettings(), cache)
    ProxyWasmPlugin(PluginSpec("tagger", guests["tagger"]), rt)
    (entry,) = cache.glob("*.cwasm")
    entry.write_bytes(b"not a compiled module")
    plugin = ProxyWasmPlugin(PluginSpec("tagger", guests["tagger"]), rt)
    plugin.start()
    assert rt.cache.misses == 2
    rt.close()


def test_unknown_import_is_refused_naming_it(runtime: WasmRuntime, guests: dict[str, Path]) -> None:
    with pytest.raises(PluginLoadError, match=r"env\.proxy_does_not_exist"):
        ProxyWasmPlugin(PluginSpec("bad", guests["hostile_import"]), runtime)


def test_import_with_wrong_signature_is_refused(runtime: WasmRuntime, tmp_path: Path) -> None:
    path = wat_module(
        tmp_path,
        """(module (import "env" "proxy_log" (func (param i32) (result i32)))
                   (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))""",
    )
    with pytest.raises(PluginLoadError, match=r"env\.proxy_log \(imported as \(i32\)"):
        ProxyWasmPlugin(PluginSpec("sig", path), runtime)


def test_module_without_abi_marker_is_refused(runtime: WasmRuntime, tmp_path: Path) -> None:
    path = wat_module(tmp_path, '(module (memory (export "memory") 1))')
    with pytest.raises(PluginLoadError, match="proxy_abi_version"):
        ProxyWasmPlugin(PluginSpec("nomarker", path), runtime)


def test_abi_0_2_0_modules_are_accepted(runtime: WasmRuntime, tmp_path: Path) -> None:
    path = wat_module(
        tmp_path,
        """(module (import "env" "proxy_continue_request" (func (result i32)))
                   (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_0")))""",
    )
    plugin = ProxyWasmPlugin(PluginSpec("old", path), runtime)
    plugin.start()
    assert plugin.abi_version == "0.2.0"


def test_garbage_file_is_refused(runtime: WasmRuntime, tmp_path: Path) -> None:
    path = tmp_path / "junk.wasm"
    path.write_bytes(b"\x00asm\x01\x00\x00\x00garbage")
    with pytest.raises(PluginLoadError, match="not a valid WebAssembly module"):
        ProxyWasmPlugin(PluginSpec("junk", path), runtime)


def test_start_function_that_never_ends_is_bounded(runtime: WasmRuntime, guests: dict[str, Path]) -> None:
    spec = PluginSpec("spin", guests["hostile_start_loop"], limits=SandboxLimits(fuel=10**12, timeout_ms=50))
    plugin = ProxyWasmPlugin(spec, runtime)
    began = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        plugin.start()
    assert time.monotonic() - began < 5
    assert plugin.stats.traps_by_kind == {"deadline_exceeded": 1}


def test_start_function_is_also_fuel_bounded(runtime: WasmRuntime, guests: dict[str, Path]) -> None:
    spec = PluginSpec("spin", guests["hostile_start_loop"], limits=SandboxLimits(fuel=100_000, timeout_ms=60_000))
    with pytest.raises(FuelExhausted):
        ProxyWasmPlugin(spec, runtime).start()


def test_wat_start_section_loop_is_bounded(runtime: WasmRuntime, tmp_path: Path) -> None:
    path = wat_module(
        tmp_path,
        """(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
                   (func $spin (loop $l (br $l))) (start $spin))""",
    )
    spec = PluginSpec("startsec", path, limits=SandboxLimits(fuel=10**12, timeout_ms=50))
    with pytest.raises(DeadlineExceeded):
        ProxyWasmPlugin(spec, runtime).start()


def test_configure_returning_false_refuses_the_plugin(runtime: WasmRuntime, tmp_path: Path) -> None:
    path = wat_module(
        tmp_path,
        """(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
                   (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0)))""",
    )
    with pytest.raises(PluginLoadError, match="proxy_on_configure returned false"):
        ProxyWasmPlugin(PluginSpec("picky", path), runtime).start()


RECORDING_GUEST = """
(module
  (import "env" "host_add" (func $host_add (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $inner (export "inner") (result i32) (i32.const 7))
  (func (export "work") (param $n i32) (result i32)
    (local $i i32)
    (loop $again
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (local.get $n))))
    (call $host_add (local.get $i)))
  (func (export "boom") (result i32) unreachable))
"""


def test_guest_calls_record_their_own_time_and_fuel() -> None:
    """GuestCall.record_into (the hook stats' sampling): every successful top-level call
    appends (elapsed ns, fuel used); a trap appends nothing, nor does a guest call made
    from inside a host call; on_full runs each time the list reaches fold_at."""
    from routeiq.runtime.vm import HostFunction, WasmVM

    runtime = WasmRuntime(EngineSettings(), None)
    module = wasmtime.Module(runtime.engine, wasmtime.wat2wasm(RECORDING_GUEST))
    vm = WasmVM(runtime.engine, module, SandboxLimits(), runtime.settings.epoch_tick_ms)
    nested: list[int] = []

    def host_add(value: int) -> int:
        nested.append(inner())  # a nested guest call: not recorded
        return value + 1

    vm.instantiate({("env", "host_add"): HostFunction("env", "host_add", ("i32",), ("i32",), host_add)})
    inner, work, boom = vm.function("inner"), vm.function("work"), vm.function("boom")
    assert inner is not None and work is not None and boom is not None
    samples: list[tuple[int, int]] = []
    folds: list[int] = []
    inner.record_into(samples, None, 1000)
    work.record_into(samples, lambda: folds.append(len(samples)), 3)
    boom.record_into(samples, None, 1000)
    assert work(10) == 11 and work(1000) == 1001
    with pytest.raises(Exception):
        boom()
    assert nested == [7, 7] and len(samples) == 2 and folds == []
    (t_small, fuel_small), (t_big, fuel_big) = samples
    assert t_small > 0 and t_big > 0 and 0 < fuel_small < fuel_big
    work(1)
    assert folds == [3]
    vm.close()
    runtime.close()
