"""A proxy-wasm plugin: its module, its current VM, and that VM's lifecycle.

A VM that traps is discarded; the next use builds a fresh one (instantiate, _initialize,
root context, proxy_on_vm_start, proxy_on_configure). Streams that were running on the
discarded VM see their plugin as failed and follow its fail_open setting.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from typing import Any, Callable
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from routeiq.abi.proxy_wasm import ABI_VERSION_EXPORTS, LogLevel
from routeiq.dispatch.hook_stats import HookStats
from routeiq.hostcalls.state import ContextState, HostEnv, HostServices, LogSink, PluginIdentity
from routeiq.hostcalls.proxy_abi import build_host_functions
from routeiq.policy.admission import Admission, AdmissionRefused, admit
from routeiq.policy.config_schema import validate_config
from routeiq.policy.grants import deny_all
from routeiq.policy.manifest import PluginManifest
from routeiq.policy.model import PolicyModel
from routeiq.runtime.errors import GuestTrap, PluginError, PluginLoadError
from routeiq.services.callout import CalloutResult, CalloutTarget
from routeiq.runtime.limits import SandboxLimits
from routeiq.runtime.vm import GuestFunction, WasmVM, check_imports
from routeiq.runtime.wasm_runtime import WasmRuntime

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
RETRY_BACKOFF_S = 1.0
MIN_TICK_MS = 10


class PluginQuarantined(PluginError):
    """The plugin is quarantined: it is skipped (fail_open) or its requests answered 503."""

    kind = "quarantined"


class CalloutFailed(PluginError):
    """A callout failed or timed out and the plugin left its stream paused."""

    kind = "callout_failed"


class CalloutTimedOut(CalloutFailed):
    kind = "callout_timeout"


@dataclass
class PluginSpec:
    """What the gateway needs to run one plugin (built from the config file)."""

    name: str
    wasm_path: Path
    sha256: str | None = None
    root_id: str = ""
    vm_id: str = ""
    plugin_config: bytes = b""
    vm_config: bytes = b""
    fail_open: bool = False
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    environment: tuple[tuple[str, str], ...] = ()
    log_level: LogLevel = LogLevel.INFO
    pause_timeout_ms: int = 30_000
    max_buffer_bytes: int = 32 * 1024 * 1024  # body bytes it may hold, per direction
    quarantine_max_traps: int = 5  # traps within the window that quarantine the plugin
    quarantine_window_s: float = 60.0
    quarantine_cooldown_s: float = 30.0  # then one probe VM; healthy -> restored
    depends_on: tuple[str, ...] | None = None  # None: what the manifest declares
    priority: int | None = None
    on_startup_failure: str = "abort"  # abort | continue | quarantine
    startup_timeout_ms: int = 10_000
    manifest: PluginManifest | None = None  # a swapped-in module without one keeps this (its predecessor's)


@dataclass
class PluginStats:
    traps: int = 0
    vm_starts: int = 0
    last_error: str = ""
    last_error_kind: str = ""
    last_error_at: float = 0.0
    traps_by_kind: dict[str, int] = field(default_factory=dict)
    quarantines: int = 0


class PluginVM:
    """One live VM of a plugin: host env, instance, prepared callbacks, root context."""

    def __init__(self, plugin: "ProxyWasmPlugin", generation: int) -> None:
        self.generation = generation
        self.env = plugin.host_env()
        runtime = plugin.runtime
        self.plugin = plugin
        self.vm = WasmVM(runtime.engine, plugin.module, plugin.admission.limits, build_host_functions(self.env), runtime.settings.epoch_tick_ms)
        self.env.vm = self.vm
        self.env.start_callout = self._start_callout
        self.env.set_tick_period = self._set_tick_period
        self.env.queue_listener = self._queue_ready
        self._next_context_id = 1
        self.root = ContextState(context_id=0)
        self.callbacks: dict[str, GuestFunction | None] = {}
        self.tick_period_ms = 0
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        vm = self.vm
        vm.instantiate()
        allocator = vm.function("proxy_on_memory_allocate") or vm.function("malloc")
        if allocator is not None:
            vm.set_allocator(allocator)
        for name in HTTP_CALLBACKS + BACKGROUND_CALLBACKS:
            self.callbacks[name] = vm.function(name)
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
        self.root = self.new_context(stream=None)
        self.env.root = self.root
        plugin_identity = self.env.plugin
        self.call("proxy_on_context_create", self.root, self.root.context_id, 0)
        if self.call("proxy_on_vm_start", self.root, self.root.context_id, len(plugin_identity.vm_config)) == 0:
            raise PluginLoadError("proxy_on_vm_start returned false")
        if self.call("proxy_on_configure", self.root, self.root.context_id, len(plugin_identity.plugin_config)) == 0:
            raise PluginLoadError("proxy_on_configure returned false (the plugin rejected its configuration)")

    def new_context(self, stream) -> ContextState:  # type: ignore[no-untyped-def]
        context = ContextState(context_id=self._next_context_id, stream=stream)
        self._next_context_id += 1
        self.env.contexts[context.context_id] = context
        return context

    def drop_context(self, context: ContextState) -> None:
        self.env.contexts.pop(context.context_id, None)

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

    # ------------------------------------------------------- background work
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

    def _start_callout(self, origin: ContextState, call_id: int, target: CalloutTarget, body: bytes, timeout_ms: int) -> bool:
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

    def _set_tick_period(self, period_ms: int) -> None:
        self.tick_period_ms = max(period_ms, MIN_TICK_MS) if period_ms else 0
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.start_ticker()

    def start_ticker(self) -> None:
        """Start proxy_on_tick if a period is set and an event loop runs (else later)."""
        if not self.tick_period_ms or self._ticker is not None or self.vm.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
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

    def _queue_ready(self, queue_id: int) -> None:
        # Called from inside a host call (or a Redis listener): never re-enter the guest here.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon(self._deliver_queue_ready, queue_id)

    def _deliver_queue_ready(self, queue_id: int) -> None:
        if self.vm.closed:
            return
        try:
            self.call("proxy_on_queue_ready", self.root, self.root.context_id, queue_id)
        except GuestTrap as exc:
            exc.callback = exc.callback or "proxy_on_queue_ready"
            self.plugin.discard(self, exc)
            self.plugin.restart_soon()

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for task in list(self._tasks):
            task.cancel()
        self.env.services.store.drop_listener(self._queue_ready)
        self.vm.close()
        self.env.contexts.clear()


class ProxyWasmPlugin:
    """A loaded plugin module plus the VM currently serving it."""

    vm_class: type[PluginVM] = PluginVM  # what `start` builds (components use ComponentVM)

    def __init__(
        self,
        spec: PluginSpec,
        runtime: WasmRuntime,
        log_sink: LogSink | None = None,
        policy: PolicyModel | None = None,
        services: HostServices | None = None,
    ) -> None:
        self.spec = spec
        self.runtime = runtime
        self.log_sink = log_sink
        self.policy = policy
        self.services = services or HostServices()
        self.admission = Admission(deny_all(spec.name), PluginManifest(), "none", spec.limits)
        self.stats = PluginStats()
        self.hooks = HookStats()
        self.active_streams = 0  # exchanges holding contexts in this plugin's VMs
        self.on_event: Callable[[str, dict[str, Any]], None] | None = None
        self._trap_times: deque[float] = deque()
        self.quarantined_at: float | None = None
        self.quarantine_reason = ""
        self._quarantine_manual = False
        self.probing = False
        self.abi_version = ""
        self.sha256 = ""
        self.module: wasmtime.Module = self._load_module()
        self.check_config(spec.plugin_config)  # at startup, after a swap, on every reload
        self._vm: PluginVM | None = None
        self._generation = 0
        self._retry_at = 0.0
        self._start_error: PluginError | None = None

    def host_env(self) -> HostEnv:
        """The host-call state for a new VM of this plugin."""
        spec = self.spec
        identity = PluginIdentity(
            name=spec.name,
            root_id=spec.root_id,
            vm_id=spec.vm_id,
            plugin_config=spec.plugin_config,
            vm_config=spec.vm_config,
            environment=spec.environment,
            log_level=spec.log_level,
            max_buffer_bytes=spec.max_buffer_bytes,
        )
        return HostEnv(identity, self.log_sink, self.admission.grant, self.services)

    # ----------------------------------------------------------------- loading
    def _load_module(self) -> wasmtime.Module:
        spec = self.spec
        try:
            wasm = spec.wasm_path.read_bytes()
        except OSError as exc:
            raise PluginLoadError(f"cannot read module {spec.wasm_path}: {exc.strerror or exc}") from None
        digest = hashlib.sha256(wasm).hexdigest()
        self.sha256 = digest
        if spec.sha256 and spec.sha256.lower() != digest:
            raise PluginLoadError(f"sha256 mismatch for {spec.wasm_path}: config pins {spec.sha256}, file is {digest}")
        try:
            wasmtime.Module.validate(self.runtime.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            first = str(exc).splitlines()[0]
            raise PluginLoadError(f"{spec.wasm_path} is not a valid WebAssembly module: {first}") from None
        # The policy decides before anything is compiled (validation above compiles nothing).
        try:
            self.admission = admit(self.policy, spec.name, spec.wasm_path, wasm, digest, spec.limits, spec.manifest)
        except AdmissionRefused as refused:
            self.services.audit.denied(spec.name, "load", refused.reason, str(refused))
            raise
        module = self.runtime.compile(wasm, digest)
        exports = {e.name for e in module.exports}
        versions = [v for name, v in ABI_VERSION_EXPORTS.items() if name in exports]
        if not versions:
            raise PluginLoadError(
                f"{spec.wasm_path} exports no proxy-wasm ABI marker (proxy_abi_version_0_2_1 or proxy_abi_version_0_2_0)"
            )
        self.abi_version = versions[0]
        check_imports(module, build_host_functions(HostEnv(PluginIdentity(name=spec.name))))
        return module

    # --------------------------------------------------------------- VM cycle
    def start(self) -> PluginVM:
        """Build and start a fresh VM (raises the typed error if the guest fails)."""
        self._generation += 1
        vm = self.vm_class(self, self._generation)
        self.stats.vm_starts += 1
        try:
            vm.start()
        except PluginError as exc:
            vm.close()
            if isinstance(exc, GuestTrap):
                self._record(exc)
            raise
        self._vm = vm
        self._start_error = None
        return vm

    def current_vm(self) -> PluginVM:
        """The live VM, recreated if the last one was discarded (with a retry backoff
        when recreation itself fails)."""
        if self.quarantined_at is not None:
            cooled = time.monotonic() - self.quarantined_at >= self.spec.quarantine_cooldown_s
            if self._quarantine_manual or not cooled:
                raise PluginQuarantined(f"plugin {self.spec.name} is quarantined ({self.quarantine_reason})")
            if not self.probing:  # cool-down over: one fresh VM gets to prove itself
                self.probing = True
                log.warning("plugin %s: quarantine cool-down over, probing", self.spec.name)
        vm = self._vm
        if vm is not None:
            return vm
        now = time.monotonic()
        if self._start_error is not None and now < self._retry_at:
            raise self._start_error
        try:
            return self.start()
        except PluginError as exc:
            self._start_error = exc
            self._retry_at = now + RETRY_BACKOFF_S
            raise

    def discard(self, vm: PluginVM, error: GuestTrap) -> None:
        """Throw away a VM that trapped; the next request gets a new one."""
        self._record(error)
        if self._vm is vm:
            self._vm = None
        vm.close()
        log.warning("plugin %s: %s; VM discarded (generation %d)", self.spec.name, error, vm.generation)

    def _record(self, error: PluginError) -> None:
        stats = self.stats
        stats.traps += 1
        stats.last_error = str(error)
        stats.last_error_kind = error.kind
        stats.last_error_at = time.time()
        stats.traps_by_kind[error.kind] = stats.traps_by_kind.get(error.kind, 0) + 1
        now = time.monotonic()
        self._trap_times.append(now)
        while self._trap_times and now - self._trap_times[0] > self.spec.quarantine_window_s:
            self._trap_times.popleft()
        if self.probing:
            self.quarantine(f"probe failed: {error.kind}")
        elif self.quarantined_at is None and len(self._trap_times) >= self.spec.quarantine_max_traps:
            self.quarantine(f"{len(self._trap_times)} traps in {self.spec.quarantine_window_s:g} s (last: {error.kind})")

    # ------------------------------------------------------------- quarantine
    def quarantine(self, reason: str, manual: bool = False) -> None:
        """Stop using the plugin: skipped if fail_open, else its requests answer 503."""
        entering = self.quarantined_at is None or self.probing  # a failed probe re-enters
        self.quarantined_at = time.monotonic()
        self.quarantine_reason = reason
        self._quarantine_manual = manual
        self.probing = False
        if self._vm is not None:
            vm, self._vm = self._vm, None
            self._close_when_idle(vm)
        if entering:
            self.stats.quarantines += 1
        log.warning("plugin %s quarantined: %s", self.spec.name, reason)
        self._emit("plugin_quarantined", {"plugin": self.spec.name, "reason": reason, "manual": manual})

    @property
    def manually_quarantined(self) -> bool:
        return self.quarantined_at is not None and self._quarantine_manual

    def release(self, reason: str = "released") -> None:
        if self.quarantined_at is None:
            return
        self.quarantined_at = None
        self.quarantine_reason = ""
        self._quarantine_manual = False
        self.probing = False
        self._trap_times.clear()
        self._start_error = None
        log.warning("plugin %s restored: %s", self.spec.name, reason)
        if self._vm is None:
            try:
                self.current_vm().start_ticker()  # ready at once, not on the next request
            except PluginError as exc:
                log.warning("plugin %s could not be restarted: %s", self.spec.name, exc)

    def retire(self) -> None:
        """Replaced by a new module: close the VM once its exchanges are done."""
        if self._vm is not None:
            vm, self._vm = self._vm, None
            self._close_when_idle(vm)

    def note_success(self) -> None:
        """An exchange went through this plugin without failing it."""
        if self.probing:
            self.release("probe succeeded")

    def _emit(self, event_type: str, payload: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event_type, payload)

    def _close_when_idle(self, vm: PluginVM) -> None:
        """Exchanges already on this VM finish on it; close it once they are gone."""
        if self.active_streams == 0:
            vm.close()
            return

        async def later() -> None:
            for _ in range(6000):  # at most ~10 minutes
                if self.active_streams == 0:
                    break
                await asyncio.sleep(0.1)
            vm.close()

        try:
            asyncio.get_running_loop().create_task(later())
        except RuntimeError:
            vm.close()

    # ------------------------------------------------------------ live config
    def check_config(self, config: bytes) -> None:
        """Raise ConfigSchemaError if `config` violates the manifest's config_schema."""
        validate_config(self.admission.manifest.config_schema, config)

    def reconfigure(self, config: bytes) -> None:
        """Apply a new plugin configuration to the live VM (proxy_on_configure) and to
        every later VM; a configuration the schema refuses is not applied, and a plugin
        that refuses it (false or a trap) keeps the old one."""
        self.check_config(config)
        vm = self.current_vm()
        old = self.spec.plugin_config
        self.spec.plugin_config = config
        vm.env.plugin.plugin_config = config
        try:
            accepted = vm.call("proxy_on_configure", vm.root, vm.root.context_id, len(config))
        except GuestTrap as exc:
            self.spec.plugin_config = old
            self.discard(vm, exc)
            raise
        if accepted == 0:
            self.spec.plugin_config = old
            vm.env.plugin.plugin_config = old
            vm.call("proxy_on_configure", vm.root, vm.root.context_id, len(old))
            raise PluginLoadError("proxy_on_configure returned false")

    def restart_soon(self) -> None:
        """Rebuild a discarded VM in the background (timer- or queue-driven plugins have no
        request to do it for them)."""

        async def restart() -> None:
            await asyncio.sleep(RETRY_BACKOFF_S)
            if self._vm is None:
                try:
                    self.current_vm().start_ticker()
                except PluginError as exc:
                    log.warning("plugin %s could not be restarted: %s", self.spec.name, exc)

        try:
            asyncio.get_running_loop().create_task(restart())
        except RuntimeError:
            pass

    def start_background(self) -> None:
        if self._vm is not None:
            self._vm.start_ticker()

    @property
    def state(self) -> str:
        if self.quarantined_at is not None:
            return "probing" if self.probing else "quarantined"
        if self._vm is not None:
            return "ready"
        if self._start_error is not None:
            return "failed"
        return "restarting"

    def close(self) -> None:
        if self._vm is not None:
            self._vm.close()
            self._vm = None

    def describe(self) -> dict[str, object]:
        return {
            "name": self.spec.name,
            "state": self.state,
            "abi_version": self.abi_version,
            "sha256": self.sha256,
            "fail_open": self.spec.fail_open,
            "vm_generation": self._generation,
            "vm_starts": self.stats.vm_starts,
            "traps": self.stats.traps,
            "traps_by_kind": dict(self.stats.traps_by_kind),
            "last_error": self.stats.last_error or None,
            "quarantines": self.stats.quarantines,
            "quarantine_reason": self.quarantine_reason or None,
            "capabilities": sorted(c.value for c in self.admission.grant.capabilities),
            "pinned_by": self.admission.grant.pinned_by,
        }


def load_plugin(
    spec: PluginSpec,
    runtime: WasmRuntime,
    log_sink: LogSink | None = None,
    policy: PolicyModel | None = None,
    services: HostServices | None = None,
) -> ProxyWasmPlugin:
    """The plugin for `spec`'s file, by the kind its header names: a routeiq:filter
    component (layer 1) gets a ComponentPlugin, a core module a ProxyWasmPlugin."""
    from routeiq.runtime.component import is_component

    try:
        with open(spec.wasm_path, "rb") as f:
            header = f.read(8)
    except OSError:
        header = b""  # ProxyWasmPlugin reports the unreadable file
    if is_component(header):
        from .component_plugin import ComponentPlugin

        return ComponentPlugin(spec, runtime, log_sink, policy, services)
    return ProxyWasmPlugin(spec, runtime, log_sink, policy, services)
