"""Wasm modules as MCP tools: one sandboxed VM per tool, JSON in and JSON out.

The core-module ABI (abi/mcp_tool.md): the host copies the call's arguments (JSON) into a
buffer from the guest's `proxy_on_memory_allocate`, calls `routeiq_tool_call(ptr, len)`,
and takes what the guest passed to `routeiq_tool_set_output(ptr, len)`: status 0, the JSON
result; any other status, an error message. Each call runs under the tool's fuel, deadline
and memory limits with the host calls its policy grant allows (the filters' host-call
layer); a trap discards the VM and the next call gets a fresh one."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import wasmtime
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from routeiq import strict_json
from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import LogLevel, Status
from routeiq.config import ConfigError, LoadedConfig, McpAllowConfig, McpToolConfig, config_bytes
from routeiq.dispatch.hook_stats import LatencyHistogram
from routeiq.hostcalls.proxy_abi import build_host_functions
from routeiq.hostcalls.state import ContextState, HostEnv, HostServices, LogSink, PluginIdentity
from routeiq.policy.admission import Admission, AdmissionRefused, admit
from routeiq.policy.config_schema import ConfigSchemaError, schema_errors, validate_config
from routeiq.policy.model import PolicyModel
from routeiq.runtime.errors import GuestTrap, PluginLoadError
from routeiq.runtime.limits import SandboxLimits
from routeiq.runtime.vm import GuestFunction, GuestMemoryError, HostFunction, WasmVM, check_imports
from routeiq.runtime.wasm_runtime import WasmRuntime
from routeiq.services.callout import CalloutTarget

log = logging.getLogger("routeiq.mcp")

CALL_EXPORT = "routeiq_tool_call"
OUTPUT_IMPORT = "routeiq_tool_set_output"
TOOL_OK = 0
# A tool call is one synchronous guest call: nothing can deliver a callout response or a
# tick into it, so these capabilities are refused at load rather than silently useless.
NOT_FOR_TOOLS = (Capability.HTTP_CALLOUT, Capability.TIMERS, Capability.SHARED_QUEUE)


class ToolInputError(ValueError):
    """The arguments do not match the tool's input_schema (nothing ran)."""


@dataclass(frozen=True)
class ToolOutcome:
    """A finished call: the JSON result, or (is_error) a message for the client."""

    is_error: bool
    text: str
    structured: Any = None
    kind: str = "ok"  # ok | tool_error | bad_output | a GuestTrap kind (fuel_exhausted, ...)


class _NoBackground:
    """The VMScheduler of a tool VM: a call is one synchronous guest call, so there is no
    background work to schedule (the capabilities that need it are refused at load)."""

    def start_callout(self, origin: ContextState, call_id: int, target: CalloutTarget, body: bytes, timeout_ms: int) -> bool:
        return False

    def set_tick_period(self, period_ms: int) -> None:
        return None

    def queue_ready(self, queue_id: int) -> None:
        return None


def check_arguments(name: str, schema: dict[str, Any], arguments: dict[str, Any], stats: "ToolStats") -> None:
    """ToolInputError naming each path that breaks `schema` (counted as refused)."""
    errors = schema_errors(schema, arguments, "arguments")
    if errors:
        stats.refused += 1
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ToolInputError(f"tool {name!r}: " + "; ".join(errors[:5]) + more)


@dataclass
class ToolStats:
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # calls that ran, argument check to result
    calls: int = 0
    errors: int = 0  # tool errors and bad outputs
    traps: int = 0  # the VM was discarded
    cancelled: int = 0  # stopped by the client (notifications/cancelled); the VM was discarded too
    unavailable: int = 0  # upstream MCP server tools: the server was not reached (host/mcp/upstream.py)
    refused: int = 0  # arguments refused by input_schema


class WasmTool:
    """One configured tool: its admitted module and, between calls, one live VM."""

    def __init__(
        self,
        entry: McpToolConfig,
        wasm_path: Path,
        runtime: WasmRuntime,
        policy: PolicyModel | None,
        services: HostServices,
        log_sink: LogSink | None,
        log_level: LogLevel,
        max_output_bytes: int,
    ) -> None:
        self.name = entry.name
        self.allow: McpAllowConfig = entry.allow
        self.runtime = runtime
        self.services = services
        self.log_sink = log_sink
        self.max_output_bytes = max_output_bytes
        self.stats = ToolStats()
        self.identity = PluginIdentity(name=entry.name, plugin_config=config_bytes(entry.config), log_level=log_level)
        limits = SandboxLimits(fuel=entry.limits.fuel, memory_bytes=entry.limits.memory_mb * 1024 * 1024, timeout_ms=entry.limits.timeout_ms)
        self.admission, self.module, self.sha256 = self._load(entry, wasm_path, policy, limits)
        manifest = self.admission.manifest
        schema = manifest.input_schema
        if schema is None or schema.get("type") != "object":
            raise PluginLoadError(f"tool {self.name!r}: the manifest needs an `input_schema` with type object (MCP lists a tool with its input schema)")
        if manifest.output_schema is not None and manifest.output_schema.get("type") != "object":
            raise PluginLoadError(f"tool {self.name!r}: the manifest's `output_schema` must have type object (MCP structured content)")
        self.input_schema: dict[str, Any] = schema
        self.output_schema: dict[str, Any] | None = manifest.output_schema
        self.description = entry.description or manifest.description or ""
        validate_config(manifest.config_schema, self.identity.plugin_config)
        self._output: bytes | None = None
        self._vm: WasmVM | None = None
        self._env: HostEnv | None = None
        self._call: GuestFunction | None = None
        self._busy = threading.Lock()  # one call at a time on the tool's VM (calls run on threads)
        self._running_stop: threading.Event | None = None  # the stop of the call on the VM now
        self.retired = False  # replaced or unregistered: no new call starts on it
        self._start_vm()  # a module that cannot start is refused now, not at its first call

    def _load(self, entry: McpToolConfig, wasm_path: Path, policy: PolicyModel | None, limits: SandboxLimits) -> tuple[Admission, wasmtime.Module, str]:
        try:
            wasm = wasm_path.read_bytes()
        except OSError as exc:
            raise PluginLoadError(f"tool {self.name!r}: cannot read {wasm_path}: {exc.strerror or exc}") from None
        digest = hashlib.sha256(wasm).hexdigest()
        if entry.sha256 and entry.sha256.lower() != digest:
            raise PluginLoadError(f"tool {self.name!r}: sha256 mismatch for {wasm_path}: config pins {entry.sha256}, file is {digest}")
        try:
            wasmtime.Module.validate(self.runtime.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise PluginLoadError(f"tool {self.name!r}: {wasm_path} is not a valid WebAssembly module: {str(exc).splitlines()[0]}") from None
        try:  # the policy decides (pin, manifest vs grant) before anything is compiled
            admission = admit(policy, self.name, wasm_path, wasm, digest, limits, section="tools")
        except AdmissionRefused as refused:
            self.services.audit.denied(self.name, "load", refused.reason, str(refused))
            raise
        asked = [c.value for c in admission.manifest.capabilities if c in NOT_FOR_TOOLS]
        if asked:
            raise PluginLoadError(f"tool {self.name!r} asks for {', '.join(asked)}, which tools cannot use yet (a call is one synchronous guest call; docs/mcp.md)")
        module = self.runtime.compile(wasm, digest)
        exports = {e.name: e.type for e in module.exports}
        call = exports.get(CALL_EXPORT)
        if not isinstance(call, wasmtime.FuncType) or len(call.params) != 2 or len(call.results) != 1:
            raise PluginLoadError(f"tool {self.name!r}: the module must export {CALL_EXPORT}(input_ptr: i32, input_len: i32) -> i32 (abi/mcp_tool.md)")
        if "proxy_on_memory_allocate" not in exports and "malloc" not in exports:
            raise PluginLoadError(f"tool {self.name!r}: the module exports no allocator (proxy_on_memory_allocate or malloc)")
        return admission, module, digest

    # ----------------------------------------------------------------- the VM
    def _host_functions(self, env: HostEnv, vm: WasmVM) -> dict[tuple[str, str], HostFunction]:
        table = build_host_functions(env)
        limit = self.max_output_bytes

        def set_output(ptr: int, size: int) -> int:
            if size > limit:
                return env.deny(OUTPUT_IMPORT, "output_size", f"{size} bytes is over mcp.max_output_bytes ({limit})", Status.BAD_ARGUMENT)
            self._output = vm.read(ptr, size)
            return Status.OK

        table[("env", OUTPUT_IMPORT)] = HostFunction("env", OUTPUT_IMPORT, ("i32", "i32"), ("i32",), set_output)
        return table

    def _start_vm(self) -> None:
        # Interruptible: a call runs on a worker thread, and a client's cancel stops it at the next epoch tick.
        vm = WasmVM(self.runtime.engine, self.module, self.admission.limits, self.runtime.settings.epoch_tick_ms, interruptible=True)
        env = HostEnv(self.identity, self.log_sink, self.admission.grant, self.services, vm, _NoBackground())
        try:
            table = self._host_functions(env, vm)
            check_imports(self.module, table)
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
        self._vm, self._env, self._call = vm, env, call

    def _discard(self) -> None:
        if self._vm is not None:
            self._vm.close()
        self._vm = self._env = self._call = None

    # ------------------------------------------------------------------ calls
    def check_arguments(self, arguments: dict[str, Any]) -> None:
        check_arguments(self.name, self.input_schema, arguments, self.stats)

    def call(self, arguments: dict[str, Any], stop: threading.Event | None = None) -> ToolOutcome:
        """Run one call (ToolInputError before anything runs if the arguments do not fit).
        Blocking (calls wait for the tool's VM): the gateway runs it on a worker thread.
        Setting `stop` ends the call at the next epoch tick (outcome kind `cancelled`)."""
        self.check_arguments(arguments)
        with self._busy:
            if self.retired:  # it was swapped out while this call waited for its VM
                return ToolOutcome(True, f"tool {self.name!r} was replaced or unregistered while the call waited; call it again", kind="tool_error")
            self.stats.calls += 1
            if stop is None:
                stop = threading.Event()
            self._running_stop = stop
            if stop.is_set():  # cancelled while it waited for the VM
                self.stats.cancelled += 1
                return ToolOutcome(True, f"tool {self.name!r}: the call was cancelled before it ran", kind="cancelled")
            began = time.perf_counter_ns()
            try:
                return self._run(arguments, stop)
            finally:
                self._running_stop = None
                self.stats.latency.observe_ns(time.perf_counter_ns() - began)

    def _run(self, arguments: dict[str, Any], stop: threading.Event | None = None) -> ToolOutcome:
        data = json.dumps(arguments, separators=(",", ":")).encode()
        self._output = None
        try:
            if self._vm is None:
                self._start_vm()
            vm, env, call = self._vm, self._env, self._call
            assert vm is not None and env is not None and call is not None
            env.active = env.root
            vm.stop_on(stop)
            try:
                ptr = vm.allocate(len(data)) if data else 0
                if data and not ptr:
                    raise GuestTrap(f"tool {self.name!r}: its allocator refused {len(data)} bytes", callback=CALL_EXPORT)
                vm.write(ptr, data)
                status = call(ptr, len(data))
            finally:
                vm.stop_on(None)
                env.active = None
                env.flush_stdio()
        except (GuestTrap, GuestMemoryError) as trap:  # GuestMemoryError: its allocator answered a pointer outside its memory
            kind = trap.kind if isinstance(trap, GuestTrap) else "memory_out_of_bounds"
            if kind == "cancelled":
                self.stats.cancelled += 1
            else:
                self.stats.traps += 1
            self._discard()  # the next call gets a fresh VM
            log.warning("tool %s: %s (%s); its VM was discarded", self.name, trap, kind)
            return ToolOutcome(True, f"tool {self.name!r} failed: {trap}", kind=kind)
        except PluginLoadError as exc:  # a fresh VM did not start
            self.stats.traps += 1
            return ToolOutcome(True, f"tool {self.name!r} is unavailable: {exc}", kind=exc.kind)
        output = self._output or b""
        if status != TOOL_OK:
            self.stats.errors += 1
            message = output.decode("utf-8", "replace") or f"the tool answered status {status}"
            return ToolOutcome(True, message, kind="tool_error")
        try:
            value = strict_json.loads(output)
        except strict_json.JsonInputError as exc:
            self.stats.errors += 1
            return ToolOutcome(True, f"tool {self.name!r} answered output that is not JSON: {exc.message}", kind="bad_output")
        if self.output_schema is not None:
            errors = schema_errors(self.output_schema, value, "output")
            if errors:
                self.stats.errors += 1
                return ToolOutcome(True, f"tool {self.name!r} answered output that does not match its output_schema: " + "; ".join(errors[:5]), kind="bad_output")
        return ToolOutcome(False, json.dumps(value), structured=value)

    def retire(self) -> None:
        """Out of service (hot swap, unregistration): a call running on it finishes on its
        VM, which is then freed (on a thread, so the event loop never waits for it)."""
        self.retired = True

        def free() -> None:
            with self._busy:
                self._discard()

        threading.Thread(target=free, name=f"routeiq-retire-{self.name}", daemon=True).start()

    def close(self) -> None:
        """At shutdown: a running call is stopped at its next tick, then the VM is freed."""
        self.retired = True
        running = self._running_stop
        if running is not None:
            running.set()
        with self._busy:
            self._discard()


class ToolStartupError(ConfigError):
    """A configured tool could not be loaded (the gateway does not start; `serve` and
    `check-config` print it and exit 2, as for a plugin)."""


class ToolSet(Collector):
    """Every configured tool, loaded at startup (the gateway owns it); also the collector
    of their counters on /metrics (read at scrape time)."""

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily("routeiq_mcp_tool_calls", "MCP tool calls that ran, by tool and outcome", labels=["tool", "outcome"])
        refused = CounterMetricFamily("routeiq_mcp_tool_arguments_refused", "MCP tool calls refused by the tool's input_schema", labels=["tool"])
        every = [(name, tool.stats) for name, tool in self.tools.items()] + [pair for source in self.more_stats for pair in source()]
        for name, stats in every:
            calls.add_metric([name, "ok"], stats.calls - stats.errors - stats.traps - stats.cancelled - stats.unavailable)
            calls.add_metric([name, "tool_error"], stats.errors)
            calls.add_metric([name, "trap"], stats.traps)
            calls.add_metric([name, "cancelled"], stats.cancelled)
            if stats.unavailable:
                calls.add_metric([name, "unavailable"], stats.unavailable)
            refused.add_metric([name], stats.refused)
        latency = HistogramMetricFamily("routeiq_mcp_tool_call_seconds", "MCP tool call latency (calls that ran)", labels=["tool"])
        for name, stats in every:
            latency.add_metric([name], stats.latency.buckets(), stats.latency.sum_s)
        yield calls
        yield refused
        yield latency

    def __init__(self, config: LoadedConfig, runtime: WasmRuntime, policy: PolicyModel | None, services: HostServices, log_sink: LogSink | None = None) -> None:
        mcp = config.model.mcp
        server_level = LogLevel[config.model.server.log_level.upper()]
        where = str(config.path or "<config>")
        self._runtime, self._policy, self._services, self._log_sink = runtime, policy, services, log_sink
        self._server_level, self._max_output_bytes = server_level, mcp.max_output_bytes
        # The config file's entries, by name: what unregistering an admin override returns to.
        self.file_entries: dict[str, tuple[McpToolConfig, Path]] = {e.name: (e, config.resolve(e.wasm)) for e in mcp.tools}
        self.tools: dict[str, WasmTool] = {}
        # More tools' counters on the same families (upstream MCP servers' tools).
        self.more_stats: list[Callable[[], Iterable[tuple[str, ToolStats]]]] = []
        try:
            for i, entry in enumerate(mcp.tools):
                try:
                    tool = self.build(entry, config.resolve(entry.wasm))
                except (PluginLoadError, ConfigSchemaError) as exc:
                    raise ToolStartupError(f"{where}: mcp.tools[{i}] ({entry.name}): {exc}") from None
                log.info("tool %s loaded (sha256 %s, %s)", entry.name, tool.sha256[:12], tool.admission.manifest_origin)
                self.tools[entry.name] = tool
        except BaseException:
            self.close()
            raise

    def build(self, entry: McpToolConfig, wasm_path: Path) -> WasmTool:
        """Load one tool as configured tools are (pin, policy, manifest, schemas, VM start);
        raises PluginLoadError or ConfigSchemaError with the reason. Not yet served."""
        level = LogLevel[entry.log_level.upper()] if entry.log_level else self._server_level
        return WasmTool(entry, wasm_path, self._runtime, self._policy, self._services, self._log_sink, level, self._max_output_bytes)

    def put(self, tool: WasmTool) -> None:
        """Serve `tool` under its name from now on; the one it replaces is retired."""
        previous = self.tools.get(tool.name)
        if previous is not None and previous is not tool:
            tool.stats = previous.stats  # one tool name, one series of counters across swaps
        self.tools[tool.name] = tool
        if previous is not None and previous is not tool:
            previous.retire()

    def remove(self, name: str) -> None:
        previous = self.tools.pop(name, None)
        if previous is not None:
            previous.retire()

    def close(self) -> None:
        for tool in self.tools.values():
            tool.close()
