"""One live VM of a plugin: the instance, its prepared callbacks, its root context, and
the background work its host calls start (callouts, the tick timer, queue readiness).

A VM that traps is handed back to its owner (`discard`), which builds a fresh one for the
next use; the VM itself only runs callbacks and schedules.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from routeiq.hostcalls.proxy_abi import build_host_functions
from routeiq.hostcalls.state import ContextState, HostEnv, HttpStream, VMScheduler
from routeiq.policy.admission import Admission
from routeiq.runtime.errors import GuestTrap, PluginLoadError
from routeiq.runtime.vm import GuestFunction, WasmVM
from routeiq.runtime.wasm_runtime import WasmRuntime
from routeiq.services.callout import CalloutResult, CalloutTarget

from .errors import CalloutFailed, CalloutTimedOut
from .hook_stats import HookStats
from .plugin_spec import PluginSpec

log = logging.getLogger("routeiq.dispatch")

HTTP_CALLBACKS = (
    "proxy_on_context_create",
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_done",
    "proxy_on_log",
    "proxy_on_delete",
    "proxy_on_vm_start",
    "proxy_on_configure",
)
BACKGROUND_CALLBACKS = ("proxy_on_tick", "proxy_on_queue_ready", "proxy_on_http_call_response")
# The callbacks of an exchange the hook stats report (the chain calls them, once each
# per step): their guest calls record their own time and fuel (HookStats.attach).
TIMED_CALLBACKS = (
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_done",
    "proxy_on_log",
    "proxy_on_delete",
)
MIN_TICK_MS = 10


class VMOwner(Protocol):
    """What a VM needs from the plugin it serves."""

    spec: PluginSpec
    runtime: WasmRuntime
    module: Any
    admission: Admission
    hooks: HookStats

    def host_env(self, vm: Any, scheduler: VMScheduler) -> HostEnv: ...

    def discard(self, vm: "PluginVM", error: GuestTrap) -> None: ...

    def restart_soon(self) -> None: ...

    def background_ok(self) -> None: ...


class PluginVM:
    """One live VM of a plugin; also the VMScheduler of its host calls."""

    def __init__(self, plugin: VMOwner, generation: int) -> None:
        self.generation = generation
        self.plugin = plugin
        runtime = plugin.runtime
        self.vm = WasmVM(runtime.engine, plugin.module, plugin.admission.limits, runtime.settings.epoch_tick_ms)
        self.env = plugin.host_env(self.vm, self)
        self.root = self.env.root
        self.callbacks: dict[str, GuestFunction | None] = {}
        # The exported callbacks, for the chain to call directly (set in start), which
        # then also does what `call` does around them; None: go through `call`.
        self.direct: dict[str, GuestFunction] | None = None
        self.receives: dict[str, bool] = {}  # the chain's per-VM answers: is a body callback called?
        self.tick_period_ms = 0
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # the gateway's, once known (queue readiness)

    def start(self) -> None:
        vm = self.vm
        vm.instantiate(build_host_functions(self.env))
        allocator = vm.function("proxy_on_memory_allocate") or vm.function("malloc")
        if allocator is not None:
            vm.set_allocator(allocator)
        for name in HTTP_CALLBACKS + BACKGROUND_CALLBACKS:
            self.callbacks[name] = vm.function(name)
        for name in TIMED_CALLBACKS:
            fn = self.callbacks[name]
            if fn is not None:
                self.plugin.hooks.attach(name, fn)
        self.direct = {name: fn for name, fn in self.callbacks.items() if fn is not None}
        initialize = vm.function("_initialize")
        if initialize is not None:
            initialize()
            main = vm.function("main")
            if main is not None and main.param_count == 2:
                main(0, 0)
        else:
            start = vm.function("_start")
            if start is not None:
                start()
        plugin_identity = self.env.plugin
        self.call("proxy_on_context_create", self.root, self.root.context_id, 0)
        if self.call("proxy_on_vm_start", self.root, self.root.context_id, len(plugin_identity.vm_config)) == 0:
            raise PluginLoadError("proxy_on_vm_start returned false")
        if self.call("proxy_on_configure", self.root, self.root.context_id, len(plugin_identity.plugin_config)) == 0:
            raise PluginLoadError("proxy_on_configure returned false (the plugin rejected its configuration)")

    def new_context(self, stream: HttpStream | None) -> ContextState:
        return self.env.new_context(stream)

    def drop_context(self, context: ContextState) -> None:
        self.env.drop_context(context)

    def exports(self, name: str) -> bool:
        return self.callbacks.get(name) is not None

    def call(self, name: str, context: ContextState, *args: int) -> int | None:
        """Run one callback with `context` active. Callbacks the module does not export
        are not called (None is returned)."""
        fn = self.callbacks.get(name)
        if fn is None:
            return None
        env = self.env
        env.active = context
        try:
            return fn(*args)
        finally:
            env.active = None
            if env.stdio_pending:
                env.flush_stdio()

    # ------------------------------------------ background work (VMScheduler)
    def _spawn(self, coro) -> bool:  # type: ignore[no-untyped-def]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return False
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def start_callout(self, origin: ContextState, call_id: int, target: CalloutTarget, body: bytes, timeout_ms: int) -> bool:
        origin.pending_callouts.add(call_id)
        started = self._spawn(self._run_callout(origin, call_id, target, body, timeout_ms))
        if not started:
            origin.pending_callouts.discard(call_id)
        return started

    async def _run_callout(self, origin: ContextState, call_id: int, target: CalloutTarget, body: bytes, timeout_ms: int) -> None:
        services = self.env.services
        result = await services.callouts.run(target, body, timeout_ms, self.env.grant.limits.callout_max_response_bytes)
        origin.pending_callouts.discard(call_id)
        if not result.ok:
            log.warning("plugin %s: callout %d to %s failed: %s", self.plugin.spec.name, call_id, target.url, result.message)
        if self.vm.closed or origin.context_id not in self.env.contexts:
            return  # the VM was replaced or the stream is over: nobody to tell
        self.deliver_callout(origin, call_id, result)

    def deliver_callout(self, origin: ContextState, call_id: int, result: CalloutResult) -> None:
        """proxy_on_http_call_response on the root context with `origin` effective; then
        wake the stream, failing it if the call failed and the plugin left it paused."""
        env = self.env
        env.callout_response = result
        stream = origin.stream
        try:
            headers = len(result.headers) if result.ok else 0
            self.call(
                "proxy_on_http_call_response",
                origin,
                self.root.context_id,
                call_id,
                headers,
                len(result.body) if result.ok else 0,
                len(result.trailers) if result.ok else 0,
            )
        except GuestTrap as exc:
            exc.callback = exc.callback or "proxy_on_http_call_response"
            self.plugin.discard(self, exc)
            origin.failure = exc
        finally:
            env.callout_response = None
        if stream is not None and not result.ok and origin.failure is None:
            decided = stream.local_response is not None or origin.resume_requested or origin.close_requested
            if not decided and not origin.pending_callouts:
                cls = CalloutTimedOut if result.timed_out else CalloutFailed
                origin.failure = cls(f"callout {call_id} {result.message}")
        if origin.wakeup is not None:
            origin.wakeup()

    def set_tick_period(self, period_ms: int) -> None:
        self.tick_period_ms = max(period_ms, MIN_TICK_MS) if period_ms else 0
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.start_ticker()

    def start_ticker(self) -> None:
        """Start proxy_on_tick if a period is set and an event loop runs (else later).
        Also where a VM built before the loop ran (at startup) learns the loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loop = loop
        if not self.tick_period_ms or self._ticker is not None or self.vm.closed:
            return
        self._ticker = loop.create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        while not self.vm.closed and self.tick_period_ms:
            await asyncio.sleep(self.tick_period_ms / 1000.0)
            if self.vm.closed:
                return
            self.root.callouts_made = 0  # the per-request callout cap applies per tick
            try:
                self.call("proxy_on_tick", self.root, self.root.context_id)
            except GuestTrap as exc:
                exc.callback = exc.callback or "proxy_on_tick"
                self._ticker = None
                self.plugin.discard(self, exc)
                self.plugin.restart_soon()
                return
            self.plugin.background_ok()

    def queue_ready(self, queue_id: int) -> None:
        # Called from inside a host call, or from a Redis listener's thread (a queue
        # registered at startup, before the loop ran): never re-enter the guest here.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = self._loop
            if loop is None or loop.is_closed():
                return
        loop.call_soon_threadsafe(self._deliver_queue_ready, queue_id)

    def _deliver_queue_ready(self, queue_id: int) -> None:
        if self.vm.closed:
            return
        try:
            self.call("proxy_on_queue_ready", self.root, self.root.context_id, queue_id)
        except GuestTrap as exc:
            exc.callback = exc.callback or "proxy_on_queue_ready"
            self.plugin.discard(self, exc)
            self.plugin.restart_soon()
            return
        self.plugin.background_ok()

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for task in list(self._tasks):
            task.cancel()
        self.env.services.store.drop_listener(self.queue_ready)
        self.env.flush_stdio()
        self.vm.close()
        self.env.contexts.clear()
