"""A proxy-wasm plugin: its module, its current VM, and that VM's lifecycle.

A VM that traps is discarded; the next use builds a fresh one (instantiate, _initialize,
root context, proxy_on_vm_start, proxy_on_configure). Streams that were running on the
discarded VM see their plugin as failed and follow its fail_open setting.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from routeiq.abi.proxy_wasm import ABI_VERSION_EXPORTS, LogLevel
from routeiq.hostcalls.state import ContextState, HostEnv, LogSink, PluginIdentity
from routeiq.hostcalls.table import build_host_functions
from routeiq.runtime.errors import GuestTrap, PluginError, PluginLoadError
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
RETRY_BACKOFF_S = 1.0


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


@dataclass
class PluginStats:
    traps: int = 0
    vm_starts: int = 0
    last_error: str = ""
    last_error_kind: str = ""
    last_error_at: float = 0.0
    traps_by_kind: dict[str, int] = field(default_factory=dict)


class PluginVM:
    """One live VM of a plugin: host env, instance, prepared callbacks, root context."""

    def __init__(self, plugin: "ProxyWasmPlugin", generation: int) -> None:
        spec = plugin.spec
        self.generation = generation
        self.env = HostEnv(
            PluginIdentity(
                name=spec.name,
                root_id=spec.root_id,
                vm_id=spec.vm_id,
                plugin_config=spec.plugin_config,
                vm_config=spec.vm_config,
                environment=spec.environment,
                log_level=spec.log_level,
            ),
            plugin.log_sink,
        )
        runtime = plugin.runtime
        self.vm = WasmVM(runtime.engine, plugin.module, spec.limits, build_host_functions(self.env), runtime.settings.epoch_tick_ms)
        self.env.vm = self.vm
        self._next_context_id = 1
        self.root = ContextState(context_id=0)
        self.callbacks: dict[str, GuestFunction | None] = {}

    def start(self) -> None:
        vm = self.vm
        vm.instantiate()
        allocator = vm.function("proxy_on_memory_allocate") or vm.function("malloc")
        if allocator is not None:
            vm.set_allocator(allocator)
        for name in HTTP_CALLBACKS:
            self.callbacks[name] = vm.function(name)
        initialize = vm.function("_initialize")
        if initialize is not None:
            initialize()
            main = vm.function("main")
            if main is not None and main._nparams == 2:
                main(0, 0)
        else:
            start = vm.function("_start")
            if start is not None:
                start()
        self.root = self.new_context(stream=None)
        spec_env = self.env
        self.call("proxy_on_context_create", self.root, self.root.context_id, 0)
        if self.call("proxy_on_vm_start", self.root, self.root.context_id, len(spec_env.plugin.vm_config)) == 0:
            raise PluginLoadError("proxy_on_vm_start returned false")
        if self.call("proxy_on_configure", self.root, self.root.context_id, len(spec_env.plugin.plugin_config)) == 0:
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

    def close(self) -> None:
        self.vm.close()
        self.env.contexts.clear()


class ProxyWasmPlugin:
    """A loaded plugin module plus the VM currently serving it."""

    def __init__(self, spec: PluginSpec, runtime: WasmRuntime, log_sink: LogSink | None = None) -> None:
        self.spec = spec
        self.runtime = runtime
        self.log_sink = log_sink
        self.stats = PluginStats()
        self.abi_version = ""
        self.sha256 = ""
        self.module: wasmtime.Module = self._load_module()
        self._vm: PluginVM | None = None
        self._generation = 0
        self._retry_at = 0.0
        self._start_error: PluginError | None = None

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
        module = self.runtime.compile(wasm, digest)
        exports = {e.name for e in module.exports}
        versions = [v for name, v in ABI_VERSION_EXPORTS.items() if name in exports]
        if not versions:
            raise PluginLoadError(
                f"{spec.wasm_path} exports no proxy-wasm ABI marker (proxy_abi_version_0_2_1 or proxy_abi_version_0_2_0)"
            )
        self.abi_version = versions[0]
        probe_env = HostEnv(PluginIdentity(name=spec.name))
        check_imports(module, build_host_functions(probe_env))
        return module

    # --------------------------------------------------------------- VM cycle
    def start(self) -> PluginVM:
        """Build and start a fresh VM (raises the typed error if the guest fails)."""
        self._generation += 1
        vm = PluginVM(self, self._generation)
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

    @property
    def state(self) -> str:
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
        }
