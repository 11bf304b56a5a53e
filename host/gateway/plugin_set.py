"""The Wasm plugins one gateway runs, in chain order: loading them at startup (each with
its on_startup_failure mode and the operator's admin changes applied), ordering, hot swaps
(an admin upload or the config file naming another module) and undoing admin changes.

The filter chain reads `plugins`; a swap replaces an entry of that same list, so exchanges
already running finish on the old plugin while new ones get the new. Service plugins
(Envoy's WasmService: a root context only) live in `service_plugins`, which the filter
chain never sees; everything else (health, admin, metrics, swaps, quarantine) treats both
alike."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .operator_state import OperatorState
from routeiq.config import ConfigError
from routeiq.dispatch.loader import load_plugin
from routeiq.dispatch.ordering import OrderingError, plugin_order
from routeiq.dispatch.plugin import EventSink, ProxyWasmPlugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.dispatch.quarantine import Clock
from routeiq.hostcalls.state import HostServices, LogSink
from routeiq.policy.manifest import KEPT_ORIGIN
from routeiq.policy.model import PolicyModel
from routeiq.runtime.errors import PluginError, PluginLoadError
from routeiq.runtime.wasm_runtime import WasmRuntime

if TYPE_CHECKING:
    from .route_table import Route

log = logging.getLogger("routeiq.gateway")


class PluginStartupError(ConfigError):
    """A configured plugin could not be loaded or started."""


class PluginSet:
    def __init__(
        self,
        runtime: WasmRuntime,
        policy: PolicyModel | None,
        services: HostServices,
        logs: LogSink,
        operator_state: OperatorState,
        on_event: EventSink,
        clock: Clock = time.monotonic,
        where: str = "<config>",
    ) -> None:
        self.runtime = runtime
        self.policy = policy
        self.services = services
        self.logs = logs
        self.operator_state = operator_state
        self.on_event = on_event
        self.clock = clock
        self.where = where  # the config file, for errors
        self.plugins: list[ProxyWasmPlugin] = []  # the filter chain, in order
        self.service_plugins: list[ProxyWasmPlugin] = []  # root context only, never on the request path
        self.failed: list[dict[str, Any]] = []  # left out at startup (on_startup_failure: continue)
        # Route-scoped instances (a route's own config of a plugin), by (route, plugin name).
        self.route_instances: dict[tuple[str, str], ProxyWasmPlugin] = {}
        self._route_configs: dict[tuple[str, str], bytes] = {}

    # ----------------------------------------------------------------- startup
    def load(self, specs: Iterable[PluginSpec]) -> None:
        """Load and start every configured plugin, then order them. Operator changes made
        through /admin (config, module, quarantine) win over the file's values."""
        for spec in specs:
            spec = self.operator_state.apply(spec)
            plugin = self._load_at_startup(spec)
            if plugin is None:
                continue
            reason = self.operator_state.quarantine_reason(spec.name)
            if reason is not None:  # an operator's quarantine holds until released
                plugin.quarantine(reason, manual=True)
            (self.service_plugins if spec.kind == "service" else self.plugins).append(plugin)
        self._order()

    def _build(self, spec: PluginSpec) -> ProxyWasmPlugin:
        return load_plugin(spec, self.runtime, self.logs, self.policy, self.services, self.on_event, self.clock)

    def _load_at_startup(self, spec: PluginSpec) -> ProxyWasmPlugin | None:
        where = f"{self.where}: plugin {spec.name!r} ({spec.wasm_path})"
        plugin: ProxyWasmPlugin | None = None
        try:
            plugin = self._build(spec)
            began = time.monotonic()
            plugin.start()
            elapsed_ms = (time.monotonic() - began) * 1000
            if elapsed_ms > spec.startup_timeout_ms:
                plugin.close()
                raise PluginLoadError(f"took {elapsed_ms:.0f} ms to start (startup_timeout_ms {spec.startup_timeout_ms})")
        except PluginError as exc:
            mode = spec.on_startup_failure
            if mode == "abort":
                raise PluginStartupError(f"{where}: {exc}") from None
            if mode == "quarantine" and plugin is not None:
                log.error("%s: %s; starting quarantined", where, exc)
                plugin.quarantine(f"failed at startup: {exc}")
                return plugin
            log.error("%s: %s; continuing without it", where, exc)
            self.failed.append({"name": spec.name, "kind": spec.kind, "state": "failed", "last_error": str(exc)})
            return None
        log.info("plugin %s loaded (ABI %s, sha256 %s)", spec.name, plugin.abi_version, plugin.sha256[:12])
        return plugin

    def _order(self) -> None:
        """Dependencies first, then priority, then config order (errors name the cycle)."""
        names = [p.spec.name for p in self.plugins]
        depends = {p.spec.name: list(p.spec.depends_on if p.spec.depends_on is not None else p.admission.manifest.depends_on) for p in self.plugins}
        priority = {p.spec.name: p.spec.priority if p.spec.priority is not None else p.admission.manifest.priority for p in self.plugins}
        try:
            order = plugin_order(names, depends, priority)
        except OrderingError as exc:
            raise PluginStartupError(f"{self.where}: plugins: {exc}") from None
        by_name = {p.spec.name: p for p in self.plugins}
        self.plugins[:] = [by_name[n] for n in order]

    def load_routes(self, routes: Sequence["Route"]) -> None:
        """Start the route-scoped instances: a route that gives a plugin its own config
        runs its own instance of it (same module, own VM and root context configured with
        the route's config), as Kong's route-scoped plugins; it fails at startup as its
        plugin's on_startup_failure says. Quarantine, release and module swaps of the
        plugin apply to its route instances too; its admin config does not (the route's
        config is the route's)."""
        chain = {p.spec.name: p for p in self.plugins}
        for route in routes:
            for name, config in route.configs.items():
                base = chain.get(name)
                if base is None:
                    continue  # left out at startup: nothing to scope
                key = (route.name, name)
                self._route_configs[key] = config
                where = f"{self.where}: routes {route.name!r}: plugin {name!r}"
                try:
                    instance = self._start(self._build(replace(base.spec, plugin_config=config)))
                except PluginError as exc:
                    if base.spec.on_startup_failure == "abort":
                        raise PluginStartupError(f"{where}: {exc}") from None
                    log.error("%s: %s; the route runs the plugin's own instance", where, exc)
                    continue
                if base.manually_quarantined:
                    instance.quarantine(base.quarantine_reason, manual=True)
                self.route_instances[key] = instance

    def chain_for(self, route: "Route | None") -> list[ProxyWasmPlugin]:
        """The plugins a request on `route` runs through, in chain order."""
        if route is None or not route.customizes_plugins:
            return self.plugins
        instances = self.route_instances
        return [instances.get((route.name, p.spec.name), p) for p in self.plugins if p.spec.name not in route.disabled]

    def instances_of(self, name: str) -> list[ProxyWasmPlugin]:
        return [p for (_, n), p in self.route_instances.items() if n == name]

    def quarantine(self, name: str, reason: str) -> ProxyWasmPlugin:
        """An operator's quarantine of a plugin and of its route instances."""
        plugin = self.plugin(name)
        for p in [plugin, *self.instances_of(name)]:
            p.quarantine(reason, manual=True)
        return plugin

    def release(self, name: str, reason: str) -> ProxyWasmPlugin:
        plugin = self.plugin(name)
        for p in [plugin, *self.instances_of(name)]:
            p.release(reason)
        return plugin

    # ------------------------------------------------------------------ lookup
    def all(self) -> list[ProxyWasmPlugin]:
        """Filter plugins (chain order), then services."""
        return self.plugins + self.service_plugins

    def plugin(self, name: str) -> ProxyWasmPlugin:
        """The plugin or service named `name` (KeyError if there is none)."""
        for p in self.all():
            if p.spec.name == name:
                return p
        raise KeyError(name)

    def names(self) -> set[str]:
        return {p.spec.name for p in self.all()} | {f["name"] for f in self.failed}

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for plugin in self.all():
            entry = plugin.describe()
            scoped = [(route, p) for (route, n), p in self.route_instances.items() if n == plugin.spec.name]
            if scoped:
                entry["route_instances"] = [{"route": route, "state": p.state, "traps": p.stats.traps, "quarantine_reason": p.quarantine_reason or None} for route, p in scoped]
            out.append(entry)
        return out + self.failed

    # ------------------------------------------------------------------- swaps
    async def swap_module(self, name: str, wasm: bytes) -> ProxyWasmPlugin:
        """Hot swap (admin upload): build and start the new module first (any failure
        leaves the old one serving and nothing written to the state dir), then switch;
        exchanges in flight finish on the old VM. The operator's change is persisted.
        Reading, admission and compiling (a second or more for a multi-MB module) run on
        a thread, so the gateway keeps serving meanwhile; the VM starts on the loop."""
        old = self.plugin(name)
        kept = old.admission.manifest if old.admission.manifest_origin != "none" else None
        with tempfile.TemporaryDirectory(prefix="routeiq-upload-") as staging:
            # Validated from outside the state dir; kept there only once accepted.
            staged = Path(staging) / self.operator_state.module_path(wasm).name
            staged.write_bytes(wasm)
            new = await self._start_off_loop(old, replace(old.spec, wasm_path=staged, sha256=None, manifest=kept))
            try:
                path = self.operator_state.store_module(wasm)
            except OSError:
                new.close()
                raise
        new.spec.wasm_path = path
        await self._switch(old, new)
        self.operator_state.save_module(name, path, kept if new.admission.manifest_origin == KEPT_ORIGIN else None)
        return new

    async def swap_to_file(self, name: str, wasm_path: Path, sha256: str | None) -> ProxyWasmPlugin:
        """Hot swap to the module the config file names (the watcher, an admin reset):
        nothing persisted, the file is the record. Compiled on a thread like an upload."""
        old = self.plugin(name)
        new = await self._start_off_loop(old, replace(old.spec, wasm_path=wasm_path, sha256=sha256, manifest=None))
        await self._switch(old, new)
        return new

    async def add(self, spec: PluginSpec) -> ProxyWasmPlugin:
        """A filter plugin that appeared while running (a new file in plugins_dir): read,
        admitted and compiled on a thread, started, then placed by the ordering rules (a
        dependency cycle refuses it). Requests in flight keep the chain they started with."""
        if spec.name in self.names():
            raise PluginLoadError(f"plugin {spec.name} is already loaded")
        plugin = self._start(await asyncio.to_thread(self._build, self.operator_state.apply(spec)))
        self.plugins.append(plugin)
        try:
            self._order()
        except PluginStartupError as exc:
            self.plugins.remove(plugin)
            plugin.close()
            raise PluginLoadError(str(exc)) from None
        plugin.start_background()
        log.warning("plugin %s added (sha256 %s)", spec.name, plugin.sha256[:12])
        return plugin

    def reset_config(self, name: str, file_spec: PluginSpec | None) -> ProxyWasmPlugin:
        """Undo an admin config change: the file's config (`file_spec`'s) applies again."""
        plugin = self.plugin(name)
        config = file_spec.plugin_config if file_spec is not None else b""
        if config != plugin.spec.plugin_config:
            plugin.reconfigure(config)
        self.operator_state.clear_config(name)
        return plugin

    async def reset_module(self, name: str, file_spec: PluginSpec | None) -> ProxyWasmPlugin:
        """Undo an admin module swap: back to the module the file names."""
        plugin = self.plugin(name)
        if file_spec is not None and "module" in self.operator_state.overrides(name):
            plugin = await self.swap_to_file(name, file_spec.wasm_path, file_spec.sha256)
        self.operator_state.clear_module(name)
        return plugin

    async def _start_off_loop(self, old: ProxyWasmPlugin, spec: PluginSpec) -> ProxyWasmPlugin:
        """The replacement for `old`: read, admitted and compiled on a thread (a second or
        more for a multi-MB module), started on the loop. A swap of the same plugin that
        won the race while this one compiled refuses this one."""
        loaded = await asyncio.to_thread(self._build, spec)
        if self.plugin(old.spec.name) is not old:
            loaded.close()
            raise PluginLoadError(f"plugin {old.spec.name} was swapped by another change meanwhile; retry")
        return self._start(loaded)

    def _start(self, new: ProxyWasmPlugin) -> ProxyWasmPlugin:
        try:
            new.start()
        except PluginError:
            new.close()
            raise
        return new

    async def _switch(self, old: ProxyWasmPlugin, new: ProxyWasmPlugin) -> None:
        # The plugin's route instances move to the new module too (built off the loop
        # like the plugin; one that fails keeps the old module on its route and is logged).
        moved: dict[tuple[str, str], ProxyWasmPlugin] = {}
        for key, config in self._route_configs.items():
            if key[1] != old.spec.name:
                continue
            try:
                loaded = await asyncio.to_thread(self._build, replace(new.spec, plugin_config=config))
                moved[key] = self._start(loaded)
            except PluginError as exc:
                log.error("plugin %s on route %s: the swapped module was refused (%s); the route keeps the old module", old.spec.name, key[0], exc)
        if self.plugin(old.spec.name) is not old:  # another swap won while these compiled
            for instance in [new, *moved.values()]:
                instance.close()
            raise PluginLoadError(f"plugin {old.spec.name} was swapped by another change meanwhile; retry")
        where = self.service_plugins if old in self.service_plugins else self.plugins
        where[where.index(old)] = new
        if old.manually_quarantined:  # a swap does not lift an operator's quarantine
            new.quarantine(old.quarantine_reason, manual=True)
        new.start_background()
        old.retire()
        for key, instance in moved.items():
            previous = self.route_instances.get(key)
            if previous is not None:
                if previous.manually_quarantined:
                    instance.quarantine(previous.quarantine_reason, manual=True)
                previous.retire()
            instance.start_background()
            self.route_instances[key] = instance
        log.warning("plugin %s: module swapped to sha256 %s", new.spec.name, new.sha256[:12])

    # --------------------------------------------------------------- lifecycle
    def start_background(self) -> None:
        for plugin in self.all() + list(self.route_instances.values()):
            plugin.start_background()

    def close(self) -> None:
        for plugin in self.all() + list(self.route_instances.values()):
            plugin.close()
