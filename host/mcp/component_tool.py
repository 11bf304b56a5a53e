"""MCP tools that are WebAssembly components of the routeiq:tool world
(abi/wit/tool/routeiq-tool.wit; Python tools through componentize-py).

ComponentToolGuest is the component counterpart of CoreToolGuest: the tool execution
path (tools.py: argument check, limits, traps, output check, metrics, audit) is the same;
this only translates `call(arguments) -> result<string, string>` to a status and an
output. The `host` functions are the filter world's (hostcalls.component_abi, the tool
subset TOOL_CALLS), gated by the tool's grant."""

from __future__ import annotations

import threading

from typing import Any

from wasmtime import component as wc

from routeiq.abi.proxy_wasm import Status
from routeiq.hostcalls.component_abi import TOOL_CALLS, build_component_imports
from routeiq.hostcalls.state import ContextState, HostEnv, HostServices, LogSink, PluginIdentity, VMScheduler
from routeiq.policy.admission import Admission
from routeiq.runtime.component import ComponentSandbox, find_interface
from routeiq.runtime.errors import PluginLoadError
from routeiq.runtime.wasm_runtime import WasmRuntime
from routeiq.services.callout import CalloutResult

from .tool_guest import TOOL_OK

TOOL_PACKAGE = "routeiq:tool"
TOOL_WIT_VERSION = "0.1.0"
TOOL_HOST_INTERFACE = f"{TOOL_PACKAGE}/host@{TOOL_WIT_VERSION}"
TOOL_TYPES_INTERFACE = f"{TOOL_PACKAGE}/types@{TOOL_WIT_VERSION}"
TOOL_INTERFACE = f"{TOOL_PACKAGE}/tool@{TOOL_WIT_VERSION}"
TOOL_ERROR = 1


def check_tool_component(component: wc.Component, runtime: WasmRuntime) -> str:
    """Refuse a component that is not a routeiq:tool (imports the host does not offer,
    or no `tool` export); answers the name of its tool export."""
    ty = component.type
    engine = runtime.engine
    problems = [
        name for name in ty.imports(engine)
        if not name.startswith("wasi:") and find_interface([name], TOOL_HOST_INTERFACE) is None and find_interface([name], TOOL_TYPES_INTERFACE) is None
    ]
    if problems:
        raise PluginLoadError(
            "component imports what a tool may not use: " + ", ".join(problems)
            + f" (tools get {TOOL_HOST_INTERFACE} and WASI 0.2; build it against abi/wit/tool/routeiq-tool.wit)"
        )
    exported = find_interface(ty.exports(engine), TOOL_INTERFACE)
    if exported is None:
        raise PluginLoadError(f"component does not export {TOOL_INTERFACE} (build it against abi/wit/tool/routeiq-tool.wit)")
    return exported


class ComponentToolGuest:
    """One instance of a routeiq:tool component in a ComponentSandbox."""

    def __init__(
        self,
        runtime: WasmRuntime,
        component: wc.Component,
        admission: Admission,
        identity: PluginIdentity,
        services: HostServices,
        log_sink: LogSink | None,
        max_output_bytes: int,
        scheduler: VMScheduler,
        interface: str = TOOL_INTERFACE,
    ) -> None:
        self.output: bytes | None = None
        self.finished: int | None = None
        self.max_output_bytes = max_output_bytes
        self.sandbox = ComponentSandbox(
            runtime.engine, component, admission.limits, runtime.settings.epoch_tick_ms, interface, identity.environment, host_interface=TOOL_HOST_INTERFACE
        )
        self.env = HostEnv(identity, log_sink, admission.grant, services, self.sandbox, scheduler)
        self.env.active = self.env.root
        try:
            self.sandbox.instantiate(build_component_imports(self.env, TOOL_CALLS))
        except BaseException:
            self.sandbox.close()
            raise
        finally:
            self.env.active = None
            self.env.flush_stdio()

    def invoke(self, context: ContextState, arguments: bytes) -> int:
        env = self.env
        env.active = context
        try:
            answer: Any = self.sandbox.call_generic("call", arguments.decode())
        finally:
            env.active = None
            env.flush_stdio()
        # result<string, string>: wasmtime-py lifts it as a tagged Variant (both cases
        # carry a string), else as the ok value itself.
        tag, text = (answer.tag, answer.payload) if isinstance(answer, wc.Variant) else ("ok", answer)
        data = str(text).encode()
        if len(data) > self.max_output_bytes:
            env.deny("call", "output_size", f"{len(data)} bytes is over mcp.max_output_bytes ({self.max_output_bytes})", Status.BAD_ARGUMENT)
            self.output = f"the tool's answer ({len(data)} bytes) is over mcp.max_output_bytes".encode()
            return TOOL_ERROR
        self.output = data
        return TOOL_OK if tag == "ok" else TOOL_ERROR

    def deliver(self, context: ContextState, call_id: int, result: CalloutResult) -> None:
        return None  # the tool world has no callouts: a component call never pauses

    def stop_on(self, event: threading.Event | None) -> None:
        return None  # a component call ends at its deadline (timeout_ms), not earlier

    def close(self) -> None:
        self.sandbox.close()
        self.env.contexts.clear()
