"""Host side of single host calls: the core-module adapter plus the meaning, called as the
runtime calls them (without the guest-to-host crossing), against a real VM's memory.

    .venv/bin/python bench/hostcall_micro.py [--n 200000]

Prints one line per call: ns per call (best of 5 runs). Used for before/after figures of
changes to host/hostcalls (bench/results/before_after.md).
"""

from __future__ import annotations

import argparse
import time

import wasmtime

from routeiq.abi.capabilities import Capability
from routeiq.hostcalls.state import ContextState, HeaderMap, HostEnv, HttpStream, PluginIdentity
from routeiq.policy.grants import Grant
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.limits import SandboxLimits
from routeiq.runtime.vm import WasmVM
from routeiq.runtime.wasm_runtime import WasmRuntime

try:  # the layout since issue #12
    from routeiq.hostcalls.proxy_abi import build_host_functions
except ImportError:  # before
    from routeiq.hostcalls.table import build_host_functions  # type: ignore[no-redef]

GUEST = """
(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (if (i32.gt_u (global.get $next) (i32.const 60000)) (then (global.set $next (i32.const 4096))))
    (local.get $p)))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    n = parser.parse_args().n
    runtime = WasmRuntime(EngineSettings(), None)
    module = wasmtime.Module(runtime.engine, wasmtime.wat2wasm(GUEST))
    vm = WasmVM(runtime.engine, module, SandboxLimits(), runtime.settings.epoch_tick_ms)
    env = HostEnv(PluginIdentity(name="bench"), grant=Grant(plugin="bench", capabilities=frozenset(Capability)), vm=vm)
    table = build_host_functions(env)
    vm.instantiate(table)
    vm.set_allocator(vm.function("proxy_on_memory_allocate"))  # type: ignore[arg-type]
    pairs = [(b":method", b"POST"), (b":path", b"/v1/chat/completions"), (b"content-type", b"application/json"), (b"authorization", b"Bearer x")]
    stream = HttpStream(request_headers=HeaderMap(list(pairs)))
    env.active = ContextState(context_id=2, stream=stream)
    vm.write(100, b"content-type")
    vm.write(200, b"x-routeiq-tag")
    vm.write(300, b"routeiq")
    vm.write(400, b"request\0path")

    def fn(name: str):  # type: ignore[no-untyped-def]
        return table[("env", name)].impl

    cases = {
        "proxy_get_header_map_value": (fn("proxy_get_header_map_value"), (0, 100, 12, 8, 12)),
        "proxy_replace_header_map_value": (fn("proxy_replace_header_map_value"), (0, 200, 13, 300, 7)),
        "proxy_get_property": (fn("proxy_get_property"), (400, 12, 8, 12)),
        "proxy_get_header_map_pairs": (fn("proxy_get_header_map_pairs"), (0, 8, 12)),
        "proxy_get_current_time_nanoseconds": (fn("proxy_get_current_time_nanoseconds"), (16,)),
        "proxy_increment_metric (denied id)": (fn("proxy_increment_metric"), (999, 1)),
    }
    print(f"| host call | ns per call (host side, best of 5 x {n}) |")
    print("| --- | ---: |")
    for name, (impl, args) in cases.items():
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter_ns()
            for _ in range(n):
                impl(*args)
            best = min(best, (time.perf_counter_ns() - began) / n)
        print(f"| `{name}` | {best:.0f} |")
    vm.close()
    runtime.close()


if __name__ == "__main__":
    main()
