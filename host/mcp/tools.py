"""Wasm modules as MCP tools: one sandboxed VM per tool, JSON in and JSON out.

The one execution path of a tool call, whatever the guest: check the arguments against
input_schema, run the guest (a core module speaking abi/mcp_tool.md, tool_guest.py, or a
routeiq:tool component, component_tool.py), wait for the callouts a paused core-module
call dispatched (tool_callouts.py), check the output, count, trace and audit the call.
Guest code runs on a worker thread (the guest releases the GIL), so the event loop keeps
serving, sends progress and hears a cancel meanwhile (long_calls.py); a cancel stops a
core-module guest at its next epoch tick.
Each piece of guest code runs under the tool's fuel, deadline and memory limits with the
host calls its policy grant allows (the filters' host-call layer); a trap discards the VM
and the next call gets a fresh one."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import wasmtime
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from routeiq import strict_json
from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import LogLevel
from routeiq.config import ConfigError, LoadedConfig, McpAllowConfig, McpToolConfig, config_bytes
from routeiq.dispatch.hook_stats import LatencyHistogram
from routeiq.hostcalls.state import ContextState, HostServices, LogSink, PluginIdentity
from routeiq.policy.admission import Admission, AdmissionRefused, admit
from routeiq.policy.config_schema import ConfigSchemaError, schema_errors, validate_config
from routeiq.policy.model import PolicyModel
from routeiq.runtime.errors import GuestTrap, PluginLoadError
from routeiq.runtime.limits import SandboxLimits
from routeiq.runtime.component import is_component
from routeiq.runtime.vm import GuestMemoryError
from routeiq.runtime.wasm_runtime import WasmRuntime

from .component_tool import ComponentToolGuest, check_tool_component
from .tool_callouts import CallDeadline, ToolCallouts
from .tool_guest import CALL_EXPORT, FINISH_IMPORT, TOOL_OK, TOOL_PAUSED, CoreToolGuest, ToolGuest

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger("routeiq.mcp")

# Timers and queues need background delivery a tool call does not have: refused at load
# rather than silently useless. (HTTP callouts pause the call: tool_callouts.py.)
NOT_FOR_TOOLS = (Capability.TIMERS, Capability.SHARED_QUEUE)


class ToolInputError(ValueError):
    """The arguments do not match the tool's input_schema (nothing ran)."""


@dataclass(frozen=True)
class ToolOutcome:
    """A finished call: the JSON result, or (is_error) a message for the client."""

    is_error: bool
    text: str
    structured: Any = None
    kind: str = "ok"  # ok | tool_error | bad_output | call_timeout | cancelled | a GuestTrap kind (fuel_exhausted, ...)


CANCELLED = ToolOutcome(True, "the call was cancelled", kind="cancelled")


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
    refused: int = 0  # arguments refused by input_schema
    cancelled: int = 0  # stopped by the client or its request went away (the VM was discarded)
    unavailable: int = 0  # upstream MCP server tools: the server was not reached (host/mcp/upstream.py)


class WasmTool:
    """One configured tool: its admitted module (a core module or a routeiq:tool
    component) and, between calls, one live guest."""

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
        tracer: "Tracer | None" = None,
    ) -> None:
        self.name = entry.name
        self.allow: McpAllowConfig = entry.allow
        self.runtime = runtime
        self.services = services
        self.log_sink = log_sink
        self.max_output_bytes = max_output_bytes
        self.tracer = tracer
        self.call_timeout_ms = entry.call_timeout_ms
        self.stats = ToolStats()
        self.identity = PluginIdentity(name=entry.name, plugin_config=config_bytes(entry.config), log_level=log_level)
        limits = SandboxLimits(fuel=entry.limits.fuel, memory_bytes=entry.limits.memory_mb * 1024 * 1024, timeout_ms=entry.limits.timeout_ms)
        self.kind = "core"
        self._tool_interface = ""
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
        self.callouts = ToolCallouts(self.name, services, self.admission.grant.limits.callout_max_response_bytes)
        self._guest: ToolGuest | None = None
        self._lock = asyncio.Lock()  # one call at a time on the tool's VM (a paused call holds it)
        self._running_stop: threading.Event | None = None  # the stop of the call on the VM now
        self.retired = False  # replaced or unregistered: no new call starts on it
        self._start_guest()  # a module that cannot start is refused now, not at its first call

    def _load(self, entry: McpToolConfig, wasm_path: Path, policy: PolicyModel | None, limits: SandboxLimits) -> tuple[Admission, Any, str]:
        try:
            wasm = wasm_path.read_bytes()
        except OSError as exc:
            raise PluginLoadError(f"tool {self.name!r}: cannot read {wasm_path}: {exc.strerror or exc}") from None
        digest = hashlib.sha256(wasm).hexdigest()
        if entry.sha256 and entry.sha256.lower() != digest:
            raise PluginLoadError(f"tool {self.name!r}: sha256 mismatch for {wasm_path}: config pins {entry.sha256}, file is {digest}")
        component = is_component(wasm[:8])
        if not component:
            try:
                wasmtime.Module.validate(self.runtime.engine, wasm)
            except wasmtime.WasmtimeError as exc:
                raise PluginLoadError(f"tool {self.name!r}: {wasm_path} is not a valid WebAssembly module: {str(exc).splitlines()[0]}") from None
        try:  # the policy decides (pin, manifest vs grant) before anything is compiled
            admission = admit(policy, self.name, wasm_path, wasm, digest, limits, section="tools")
        except AdmissionRefused as refused:
            self.services.audit.denied(self.name, "load", refused.reason, str(refused))
            raise
        refused_caps = NOT_FOR_TOOLS + ((Capability.HTTP_CALLOUT,) if component else ())
        asked = [c.value for c in admission.manifest.capabilities if c in refused_caps]
        if asked:
            where = "the routeiq:tool world has no callouts yet" if component else "a tool call cannot receive timer ticks or queue items"
            raise PluginLoadError(f"tool {self.name!r} asks for {', '.join(asked)}, which tools cannot use ({where}; docs/mcp.md)")
        if component:
            self.kind = "component"
            cache = self.runtime.component_cache
            try:
                loaded = cache.load_component(wasm, digest)
            except wasmtime.WasmtimeError as exc:
                raise PluginLoadError(f"tool {self.name!r}: {wasm_path} is not a valid component: {str(exc).splitlines()[0]}") from None
            log.info("tool %s: component %s in %.2f s", self.name, "loaded from cache" if cache.last_hit else "compiled", cache.last_seconds)
            self._tool_interface = check_tool_component(loaded, self.runtime)
            return admission, loaded, digest
        module = self.runtime.compile(wasm, digest)
        exports = {e.name: e.type for e in module.exports}
        call = exports.get(CALL_EXPORT)
        if not isinstance(call, wasmtime.FuncType) or len(call.params) != 2 or len(call.results) != 1:
            raise PluginLoadError(f"tool {self.name!r}: the module must export {CALL_EXPORT}(input_ptr: i32, input_len: i32) -> i32 (abi/mcp_tool.md)")
        if "proxy_on_memory_allocate" not in exports and "malloc" not in exports:
            raise PluginLoadError(f"tool {self.name!r}: the module exports no allocator (proxy_on_memory_allocate or malloc)")
        return admission, module, digest

    # ----------------------------------------------------------------- the VM
    def _start_guest(self) -> ToolGuest:
        args = (self.runtime, self.module, self.admission, self.identity, self.services, self.log_sink, self.max_output_bytes, self.callouts)
        if self.kind == "component":
            guest: ToolGuest = ComponentToolGuest(*args, interface=self._tool_interface)
        else:
            guest = CoreToolGuest(*args)
        self._guest = guest
        return guest

    def _discard(self) -> None:
        if self._guest is not None:
            self._guest.close()
        self._guest = None

    # ------------------------------------------------------------------ calls
    def check_arguments(self, arguments: dict[str, Any]) -> None:
        check_arguments(self.name, self.input_schema, arguments, self.stats)

    async def call(self, arguments: dict[str, Any], caller: str = "", stop: threading.Event | None = None) -> ToolOutcome:
        """Run one call (ToolInputError before anything runs if the arguments do not fit).
        Each piece of guest code runs on a worker thread, bounded by `timeout_ms`; a call
        waiting for its callouts waits on the loop, the whole call bounded by
        `call_timeout_ms`. Setting `stop` (from any thread) ends a core-module guest at its
        next epoch tick (outcome `cancelled`). Every call that ran is audited (no argument
        values)."""
        self.check_arguments(arguments)
        stop = stop if stop is not None else threading.Event()
        async with self._lock:
            if self.retired:  # it was swapped out while this call waited for its VM
                return ToolOutcome(True, f"tool {self.name!r} was replaced or unregistered while the call waited; call it again", kind="tool_error")
            self.stats.calls += 1
            if stop.is_set():  # cancelled while it waited for the VM
                self.stats.cancelled += 1
                return ToolOutcome(True, f"tool {self.name!r}: the call was cancelled before it ran", kind="cancelled")
            began = time.perf_counter_ns()
            span = self.tracer.start_span(f"tool {self.name}") if self.tracer is not None else None
            outcome = CANCELLED  # unless _run answers: the request went away mid-call
            self._running_stop = stop
            try:
                outcome = await self._run(arguments, stop)
            finally:
                self._running_stop = None
                if self.retired:  # swapped out or shut down while it ran: free its VM now
                    self._discard()
                elapsed = time.perf_counter_ns() - began
                self.stats.latency.observe_ns(elapsed)
                if span is not None:
                    record_span(span, self.name, self.kind, caller, outcome)
                self.services.audit.tool_call(self.name, caller, "error" if outcome.is_error else "ok", outcome.kind, elapsed / 1e6)
        return outcome

    async def _run(self, arguments: dict[str, Any], stop: threading.Event) -> ToolOutcome:
        data = json.dumps(arguments, separators=(",", ":")).encode()
        self.callouts.begin(time.monotonic() + self.call_timeout_ms / 1000)
        context: ContextState | None = None
        try:
            guest = self._guest or self._start_guest()
            guest.output, guest.finished = None, None
            context = guest.env.new_context(stream=None)
            status = await _guest_piece(guest, stop, guest.invoke, context, data)
            if guest.finished is not None:
                status = guest.finished
            while status == TOOL_PAUSED and guest.finished is None:
                if not context.pending_callouts:
                    self.stats.errors += 1
                    return ToolOutcome(True, f"tool {self.name!r} paused with no callout to wait for (it must call {FINISH_IMPORT})", kind="tool_error")
                origin, call_id, result = await self.callouts.next_result()
                context.pending_callouts.discard(call_id)
                await _guest_piece(guest, stop, guest.deliver, origin, call_id, result)
                if guest.finished is not None:
                    status = guest.finished
        except asyncio.CancelledError:  # the request went away mid-wait: the guest's paused state goes too
            self.stats.cancelled += 1
            self._discard()
            raise
        except CallDeadline:
            self.stats.traps += 1
            self._discard()  # the call's state in the guest is abandoned with it
            return ToolOutcome(True, f"tool {self.name!r} did not finish within call_timeout_ms ({self.call_timeout_ms} ms) while waiting for its callouts; raise mcp.tools[].call_timeout_ms", kind="call_timeout")
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
        finally:
            self.callouts.end()
            if context is not None and self._guest is not None:
                self._guest.env.drop_context(context)
        output = guest.output or b""
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
        VM, which that call then frees; an idle VM is freed now."""
        self.retired = True
        if not self._lock.locked():
            self._discard()

    def close(self) -> None:
        """At shutdown: a running call is stopped at its next tick and frees its VM."""
        self.retired = True
        running = self._running_stop
        if running is not None:
            running.set()
        if not self._lock.locked():
            self._discard()


async def _guest_piece(guest: ToolGuest, stop: threading.Event, piece: Callable[..., Any], *args: Any) -> Any:
    """`piece(*args)` on a worker thread. Cancelled meanwhile, it stops the guest and waits
    for the thread to leave it before the CancelledError goes on (whoever handles that may
    free the VM, which must not happen under a running guest)."""
    running = asyncio.ensure_future(asyncio.to_thread(_on_guest, guest, stop, piece, *args))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        stop.set()  # a core module stops at its next epoch tick, a component at its deadline
        # Shielded, and again after each further cancel (anyio repeats them): the thread
        # must have left the guest before anyone may free it.
        while not running.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(running)
        raise


def _on_guest(guest: ToolGuest, stop: threading.Event, piece: Callable[..., Any], *args: Any) -> Any:
    """One piece of guest code (the call, or a callout's delivery) on a worker thread,
    stoppable through `stop`."""
    guest.stop_on(stop)
    try:
        return piece(*args)
    finally:
        guest.stop_on(None)


def record_span(span: Any, tool: str, kind: str, caller: str, outcome: ToolOutcome) -> None:
    """End a call's span with what an operator filters traces by (never argument values)."""
    from opentelemetry.trace import Status as SpanStatus
    from opentelemetry.trace import StatusCode

    span.set_attribute("routeiq.tool", tool)
    span.set_attribute("routeiq.tool.kind", kind)
    span.set_attribute("routeiq.caller", caller)
    span.set_attribute("routeiq.outcome", outcome.kind)
    if outcome.is_error:
        span.set_status(SpanStatus(StatusCode.ERROR, outcome.kind))
    span.end()


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

    def __init__(
        self, config: LoadedConfig, runtime: WasmRuntime, policy: PolicyModel | None, services: HostServices, log_sink: LogSink | None = None, tracer: "Tracer | None" = None
    ) -> None:
        mcp = config.model.mcp
        server_level = LogLevel[config.model.server.log_level.upper()]
        where = str(config.path or "<config>")
        self._runtime, self._policy, self._services, self._log_sink = runtime, policy, services, log_sink
        self._server_level, self._max_output_bytes, self._tracer = server_level, mcp.max_output_bytes, tracer
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
                log.info("tool %s loaded (%s, sha256 %s, %s)", entry.name, tool.kind, tool.sha256[:12], tool.admission.manifest_origin)
                self.tools[entry.name] = tool
        except BaseException:
            self.close()
            raise

    def build(self, entry: McpToolConfig, wasm_path: Path) -> WasmTool:
        """Load one tool as configured tools are (pin, policy, manifest, schemas, VM start);
        raises PluginLoadError or ConfigSchemaError with the reason. Not yet served."""
        level = LogLevel[entry.log_level.upper()] if entry.log_level else self._server_level
        return WasmTool(entry, wasm_path, self._runtime, self._policy, self._services, self._log_sink, level, self._max_output_bytes, self._tracer)

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
