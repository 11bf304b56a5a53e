"""A tool's live VM as the tool execution path drives it (host/mcp/tools.py): start it,
run one call into a context, deliver a callout response, close it. The core-module guest
(abi/mcp_tool.md) is here; the component guest (routeiq:tool world) is in component_tool.py.
Both only translate: host calls are the filters' meaning layer, limits the sandbox's."""

from __future__ import annotations

import threading
from typing import Protocol

from routeiq.abi.proxy_wasm import Status
from routeiq.hostcalls.proxy_abi import build_host_functions
from routeiq.hostcalls.state import ContextState, HostEnv, HostServices, LogSink, PluginIdentity, VMScheduler
from routeiq.policy.admission import Admission
from routeiq.runtime.errors import GuestTrap
from routeiq.runtime.vm import GuestFunction, HostFunction, WasmVM, check_imports
from routeiq.runtime.wasm_runtime import WasmRuntime
from routeiq.services.callout import CalloutResult

CALL_EXPORT = "routeiq_tool_call"
OUTPUT_IMPORT = "routeiq_tool_set_output"
FINISH_IMPORT = "routeiq_tool_finish"
RESPONSE_EXPORT = "proxy_on_http_call_response"
TOOL_OK = 0
TOOL_PAUSED = 2  # routeiq_tool_call: waiting for the callouts it dispatched


class ToolGuest(Protocol):
    """One live instance of a tool module."""

    env: HostEnv
    output: bytes | None  # what the running call handed over (routeiq_tool_set_output)
    finished: int | None  # the status a paused call ended with (routeiq_tool_finish)

    def invoke(self, context: ContextState, arguments: bytes) -> int:
        """Run `routeiq_tool_call` (or the component's `call`): its status (TOOL_OK,
        TOOL_PAUSED, anything else an error). Raises GuestTrap."""
        ...

    def deliver(self, context: ContextState, call_id: int, result: CalloutResult) -> None:
        """A callout of the paused call finished. Raises GuestTrap."""
        ...

    def stop_on(self, event: "threading.Event | None") -> None:
        """Stop the guest code running next once `event` is set (from any thread), where
        the guest can be stopped early; None: no such stop."""
        ...

    def close(self) -> None: ...


class CoreToolGuest:
    """A core module speaking the tool ABI, on a WasmVM with the filters' host functions."""

    def __init__(
        self,
        runtime: WasmRuntime,
        module: object,
        admission: Admission,
        identity: PluginIdentity,
        services: HostServices,
        log_sink: LogSink | None,
        max_output_bytes: int,
        scheduler: VMScheduler,
    ) -> None:
        self.output = None
        self.finished = None
        # Interruptible: its calls run on worker threads, and a client's cancel stops one at the next epoch tick.
        self.vm = vm = WasmVM(runtime.engine, module, admission.limits, runtime.settings.epoch_tick_ms, interruptible=True)  # type: ignore[arg-type]
        self.env = env = HostEnv(identity, log_sink, admission.grant, services, vm, scheduler)
        try:
            table = self._host_functions(env, vm, max_output_bytes)
            check_imports(module, table)  # type: ignore[arg-type]
            vm.instantiate(table)
            allocator = vm.function("proxy_on_memory_allocate") or vm.function("malloc")
            assert allocator is not None  # checked at load
            vm.set_allocator(allocator)
            env.active = env.root
            initialize = vm.function("_initialize") or vm.function("_start")
            if initialize is not None:
                initialize()
            call = vm.function(CALL_EXPORT)
            assert call is not None  # checked at load
        except BaseException:
            vm.close()
            raise
        finally:
            env.active = None
            env.flush_stdio()
        self._call: GuestFunction = call
        self._on_response: GuestFunction | None = vm.function(RESPONSE_EXPORT)

    def _host_functions(self, env: HostEnv, vm: WasmVM, limit: int) -> dict[tuple[str, str], HostFunction]:
        table = build_host_functions(env)

        def set_output(ptr: int, size: int) -> int:
            if size > limit:
                return env.deny(OUTPUT_IMPORT, "output_size", f"{size} bytes is over mcp.max_output_bytes ({limit})", Status.BAD_ARGUMENT)
            self.output = vm.read(ptr, size)
            return Status.OK

        def finish(status: int) -> int:
            if env.active is None:
                return Status.NOT_FOUND  # no call is running
            self.finished = status
            return Status.OK

        table[("env", OUTPUT_IMPORT)] = HostFunction("env", OUTPUT_IMPORT, ("i32", "i32"), ("i32",), set_output)
        table[("env", FINISH_IMPORT)] = HostFunction("env", FINISH_IMPORT, ("i32",), ("i32",), finish)
        return table

    def invoke(self, context: ContextState, arguments: bytes) -> int:
        vm, env = self.vm, self.env
        env.active = context
        try:
            ptr = vm.allocate(len(arguments)) if arguments else 0
            if arguments and not ptr:
                raise GuestTrap(f"its allocator refused {len(arguments)} bytes", callback=CALL_EXPORT)
            vm.write(ptr, arguments)
            return self._call(ptr, len(arguments))
        finally:
            env.active = None
            env.flush_stdio()

    def deliver(self, context: ContextState, call_id: int, result: CalloutResult) -> None:
        if self._on_response is None:
            return  # nobody to tell: the call ends as "paused with nothing to wait for"
        env = self.env
        env.callout_response = result
        env.active = context
        try:
            ok = result.ok
            self._on_response(context.context_id, call_id, len(result.headers) if ok else 0, len(result.body) if ok else 0, len(result.trailers) if ok else 0)
        finally:
            env.active = None
            env.callout_response = None
            env.flush_stdio()

    def stop_on(self, event: "threading.Event | None") -> None:
        self.vm.stop_on(event)

    def close(self) -> None:
        self.vm.close()
        self.env.contexts.clear()
