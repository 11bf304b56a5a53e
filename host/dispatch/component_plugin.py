"""Plugins that are WebAssembly components of the routeiq:filter world (Python guests
built with componentize-py, or any language with WIT bindings).

ComponentPlugin and ComponentVM present the interface of ProxyWasmPlugin and PluginVM to
the filter chain: the chain calls `vm.call("proxy_on_request_headers", context, ...)`
and the VM calls the component's `on-request-headers(ctx, end-of-stream)`. Everything
around the call is shared with core modules: admission by the operator policy before
compiling (pin, then the manifest: a `routeiq.manifest` custom section or a sidecar
`<name>.manifest.json`), the compiled-artifact cache, fuel/deadline/memory limits, typed
traps, VM replacement after a trap (`discard`), fail_open, callouts, ticks, the health
report.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from routeiq.hostcalls.component_abi import build_component_imports
from routeiq.hostcalls.state import ContextState
from routeiq.runtime.component import (
    FILTER_INTERFACE,
    WIT_PACKAGE,
    WIT_VERSION,
    ComponentSandbox,
    GuestExport,
    check_component,
    is_component,
)
from routeiq.runtime.errors import PluginLoadError

from .plugin import ProxyWasmPlugin
from .plugin_vm import PluginVM

log = logging.getLogger("routeiq.dispatch")

ACTION = ("enum", ("continue", "pause"))
Adapter = Callable[[ContextState, tuple[int, ...]], tuple[Any, ...]]

# proxy-wasm callback -> (filter export, its parameters, its result, the `hooks` flag
# that must be set for it to be called (None: always), arguments from the proxy-wasm ones)
CALLBACKS: dict[str, tuple[str, tuple[str, ...], Any, str | None, Adapter]] = {
    "proxy_on_context_create": ("create-context", ("u32",), None, None, lambda c, a: (a[0],)),
    "proxy_on_request_headers": ("on-request-headers", ("u32", "bool"), ACTION, "request-headers", lambda c, a: (a[0], a[2] != 0)),
    "proxy_on_request_body": ("on-request-body", ("u32", "u32", "bool"), ACTION, "request-body", lambda c, a: (a[0], a[1], a[2] != 0)),
    "proxy_on_request_trailers": ("on-request-trailers", ("u32",), ACTION, "request-trailers", lambda c, a: (a[0],)),
    "proxy_on_response_headers": ("on-response-headers", ("u32", "bool"), ACTION, "response-headers", lambda c, a: (a[0], a[2] != 0)),
    "proxy_on_response_body": ("on-response-body", ("u32", "u32", "bool"), ACTION, "response-body", lambda c, a: (a[0], a[1], a[2] != 0)),
    "proxy_on_response_trailers": ("on-response-trailers", ("u32",), ACTION, "response-trailers", lambda c, a: (a[0],)),
    "proxy_on_done": ("on-done", ("u32",), "bool", "done", lambda c, a: (a[0],)),
    "proxy_on_log": ("on-log", ("u32",), None, "log", lambda c, a: (a[0],)),
    "proxy_on_delete": ("on-delete", ("u32",), None, None, lambda c, a: (a[0],)),
    # Called on the root context with the calling stream's context effective: the
    # component gets that stream's ctx.
    "proxy_on_http_call_response": (
        "on-http-call-response", ("u32", "u32", "u32", "u32", "u32"), None, "http-call-response", lambda c, a: (c.context_id, a[1], a[2], a[3], a[4])
    ),
    "proxy_on_tick": ("on-tick", (), None, "tick", lambda c, a: ()),
    "proxy_on_queue_ready": ("on-queue-ready", ("u32",), None, "queue-ready", lambda c, a: (a[1],)),
}


class ComponentVM(PluginVM):
    """One live instance of a component plugin, driven like a PluginVM."""

    def __init__(self, plugin: "ComponentPlugin", generation: int) -> None:  # noqa: super().__init__ builds a core VM
        spec = plugin.spec
        self.generation = generation
        self.plugin = plugin
        runtime = plugin.runtime
        self.vm = ComponentSandbox(  # type: ignore[assignment]
            runtime.engine,
            plugin.module,
            plugin.admission.limits,
            runtime.settings.epoch_tick_ms,
            plugin.filter_interface,
            spec.environment,
        )
        self.env = plugin.host_env(self.vm, self)
        self.root = self.env.root
        self.callbacks = {}
        self.direct = None  # the chain goes through `call` (its adapters, its timing)
        self.receives = {}
        self.hooks: frozenset[str] = frozenset()
        self._entries: dict[str, tuple[GuestExport, Adapter]] = {}
        self.tick_period_ms = 0
        self._ticker = None
        self._tasks = set()
        self._loop = None

    def start(self) -> None:
        sandbox: ComponentSandbox = self.vm  # type: ignore[assignment]
        sandbox.instantiate(build_component_imports(self.env))
        self.hooks = frozenset(sandbox.call_generic("implemented"))
        for callback, (export, params, result, hook, adapter) in CALLBACKS.items():
            if hook is not None and hook not in self.hooks:
                continue
            fn = sandbox.export(export, params, result)
            if fn is None:
                raise PluginLoadError(f"component does not export {self.plugin.filter_interface}#{export}")
            self._entries[callback] = (fn, adapter)
        self.env.active = self.root
        try:
            configured = sandbox.call_generic("configure", bytes(self.env.plugin.plugin_config).decode("latin-1"))  # a byte-string
        finally:
            self.env.active = None
        if not configured:
            raise PluginLoadError("configure returned false (the plugin rejected its configuration)")

    def exports(self, name: str) -> bool:
        return name in self._entries

    def call(self, name: str, context: ContextState, *args: int) -> int | None:
        """Run one callback with `context` active; hooks the guest does not implement are
        not called (None is returned)."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        fn, adapter = entry
        env = self.env
        env.active = context
        try:
            return self.vm.invoke(fn, adapter(context, args))  # type: ignore[attr-defined]
        finally:
            env.active = None


class ComponentPlugin(ProxyWasmPlugin):
    """A routeiq:filter component plus the VM currently serving it."""

    filter_interface = FILTER_INTERFACE
    vm_class = ComponentVM

    def _load_module(self) -> Any:
        spec = self.spec
        wasm, digest = self._read("component")
        if not is_component(wasm[:8]):
            raise PluginLoadError(f"{spec.wasm_path} is not a WebAssembly component")
        self._admit(wasm, digest)
        cache = self.runtime.component_cache
        component = cache.load_component(wasm, digest)
        log.info(
            "plugin %s: component %s in %.2f s", spec.name, "loaded from cache" if cache.last_hit else "compiled", cache.last_seconds
        )
        self.filter_interface = check_component(component, self.runtime.engine)
        self.abi_version = f"{WIT_PACKAGE}@{WIT_VERSION} (component)"
        return component

    def describe(self) -> dict[str, object]:
        report = super().describe()
        report["kind"] = "component"
        return report
