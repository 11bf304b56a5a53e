"""A proxy-wasm plugin: its module (read, pinned, admitted, compiled), the VM serving it,
and that VM's lifecycle: replaced after a trap (with a retry backoff when the replacement
fails), quarantined when it keeps trapping (dispatch/quarantine.py), retired on a swap,
reconfigured live. Streams that were running on a discarded VM see their plugin as failed
and follow its fail_open setting.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import wasmtime

from routeiq.abi.proxy_wasm import ABI_VERSION_EXPORTS
from routeiq.dispatch.hook_stats import HookStats
from routeiq.hostcalls.proxy_abi import build_host_functions
from routeiq.hostcalls.state import HostEnv, HostServices, LogSink, PluginIdentity, VMScheduler
from routeiq.policy.admission import Admission, AdmissionRefused, admit
from routeiq.policy.config_schema import validate_config
from routeiq.policy.grants import deny_all
from routeiq.policy.manifest import PluginManifest
from routeiq.policy.model import PolicyModel
from routeiq.runtime.errors import GuestTrap, PluginError, PluginLoadError
from routeiq.runtime.vm import check_imports
from routeiq.runtime.wasm_runtime import WasmRuntime

from .errors import PluginQuarantined
from .plugin_spec import PluginSpec
from .plugin_vm import PluginVM
from .quarantine import Clock, Quarantine

log = logging.getLogger("routeiq.dispatch")

RETRY_BACKOFF_S = 1.0
EventSink = Callable[[str, dict[str, Any]], None]


@dataclass
class PluginStats:
    traps: int = 0
    vm_starts: int = 0
    last_error: str = ""
    last_error_kind: str = ""
    last_error_at: float = 0.0
    traps_by_kind: dict[str, int] = field(default_factory=dict)
    quarantines: int = 0


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
        on_event: EventSink | None = None,
        clock: Clock = time.monotonic,
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
        self.on_event = on_event
        self.clock = clock
        self.quarantine_state = Quarantine(spec.quarantine_max_traps, spec.quarantine_window_s, spec.quarantine_cooldown_s, clock)
        self.abi_version = ""
        self.sha256 = ""
        self.module: wasmtime.Module = self._load_module()
        self.check_config(spec.plugin_config)  # at startup, after a swap, on every reload
        self._vm: PluginVM | None = None
        self._generation = 0
        self._retry_at = 0.0
        self._start_error: PluginError | None = None

    def host_env(self, vm: Any, scheduler: VMScheduler) -> HostEnv:
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
        return HostEnv(identity, self.log_sink, self.admission.grant, self.services, vm, scheduler)

    # ----------------------------------------------------------------- loading
    def _read(self, kind: str) -> tuple[bytes, str]:
        """The file's bytes and sha256, checked against the config's pin."""
        spec = self.spec
        try:
            wasm = spec.wasm_path.read_bytes()
        except OSError as exc:
            raise PluginLoadError(f"cannot read {kind} {spec.wasm_path}: {exc.strerror or exc}") from None
        digest = hashlib.sha256(wasm).hexdigest()
        self.sha256 = digest
        if spec.sha256 and spec.sha256.lower() != digest:
            raise PluginLoadError(f"sha256 mismatch for {spec.wasm_path}: config pins {spec.sha256}, file is {digest}")
        return wasm, digest

    def _admit(self, wasm: bytes, digest: str) -> None:
        """The operator's policy decides (pin, then manifest) before anything is compiled."""
        spec = self.spec
        try:
            self.admission = admit(self.policy, spec.name, spec.wasm_path, wasm, digest, spec.limits, spec.manifest, spec.vm_id)
        except AdmissionRefused as refused:
            self.services.audit.denied(spec.name, "load", refused.reason, str(refused))
            raise

    def _load_module(self) -> wasmtime.Module:
        spec = self.spec
        wasm, digest = self._read("module")
        try:
            wasmtime.Module.validate(self.runtime.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            first = str(exc).splitlines()[0]
            raise PluginLoadError(f"{spec.wasm_path} is not a valid WebAssembly module: {first}") from None
        self._admit(wasm, digest)  # validation above compiled nothing
        module = self.runtime.compile(wasm, digest)
        exports = {e.name for e in module.exports}
        versions = [v for name, v in ABI_VERSION_EXPORTS.items() if name in exports]
        if not versions:
            raise PluginLoadError(
                f"{spec.wasm_path} exports no proxy-wasm ABI marker (proxy_abi_version_0_2_1 or proxy_abi_version_0_2_0)"
            )
        self.abi_version = versions[0]
        check_imports(module, build_host_functions(HostEnv(PluginIdentity(name=spec.name))))  # names only: nothing is called
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
        quarantine = self.quarantine_state
        if quarantine.since is not None:
            runs, probing = quarantine.admits()
            if not runs:
                raise PluginQuarantined(f"plugin {self.spec.name} is quarantined ({quarantine.reason})")
            if probing:  # cool-down over: one fresh VM gets to prove itself
                log.warning("plugin %s: quarantine cool-down over, probing", self.spec.name)
        vm = self._vm
        if vm is not None:
            return vm
        now = self.clock()
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
        reason = self.quarantine_state.trapped(error.kind)
        if reason is not None:
            self.quarantine(reason)

    # ------------------------------------------------------------- quarantine
    def quarantine(self, reason: str, manual: bool = False) -> None:
        """Stop using the plugin: skipped if fail_open, else its requests answer 503."""
        entering = self.quarantine_state.enter(reason, manual)
        if self._vm is not None:
            vm, self._vm = self._vm, None
            self._close_when_idle(vm)
        if entering:
            self.stats.quarantines += 1
        log.warning("plugin %s quarantined: %s", self.spec.name, reason)
        if self.spec.kind == "service" and not manual:  # no request will probe it: a timer does
            self.restart_soon(self.quarantine_state.cooldown_s)
        self._emit("plugin_quarantined", {"plugin": self.spec.name, "reason": reason, "manual": manual})

    @property
    def quarantined(self) -> bool:
        return self.quarantine_state.active

    @property
    def quarantine_reason(self) -> str:
        return self.quarantine_state.reason

    @property
    def manually_quarantined(self) -> bool:
        return self.quarantine_state.active and self.quarantine_state.manual

    def release(self, reason: str = "released") -> None:
        if not self.quarantine_state.leave():
            return
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
        if self.quarantine_state.probing:
            self.release("probe succeeded")

    def background_ok(self) -> None:
        """A tick or a queue delivery ran cleanly. A service has no exchanges, so this is
        what proves its probe VM (a filter's probe is proved by an exchange)."""
        if self.spec.kind == "service":
            self.note_success()

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

    def restart_soon(self, delay_s: float = RETRY_BACKOFF_S) -> None:
        """Rebuild a discarded VM in the background (timer- or queue-driven plugins and
        services have no request to do it for them)."""

        async def restart() -> None:
            await asyncio.sleep(delay_s)
            if self._vm is None:
                try:
                    vm = self.current_vm()
                except PluginQuarantined:
                    return  # a service's probe has its own timer; a filter's, its next request
                except PluginError as exc:
                    log.warning("plugin %s could not be restarted: %s", self.spec.name, exc)
                    return
                vm.start_ticker()
                if not vm.tick_period_ms:
                    self.background_ok()  # started cleanly, and no tick to prove more

        try:
            asyncio.get_running_loop().create_task(restart())
        except RuntimeError:
            pass

    def start_background(self) -> None:
        if self._vm is not None:
            self._vm.start_ticker()
        elif self.spec.kind == "service" and self.quarantined and not self.manually_quarantined:
            self.restart_soon(self.quarantine_state.cooldown_s)  # quarantined at startup: probe it later

    @property
    def state(self) -> str:
        quarantine = self.quarantine_state
        if quarantine.active:
            return "probing" if quarantine.probing else "quarantined"
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
            "kind": self.spec.kind,
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
