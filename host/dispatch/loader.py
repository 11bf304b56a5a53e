"""The plugin for a module file, by the kind its header names: a routeiq:filter component
gets a ComponentPlugin, a core module a ProxyWasmPlugin."""

from __future__ import annotations

import time

from routeiq.hostcalls.state import HostServices, LogSink
from routeiq.policy.model import PolicyModel
from routeiq.runtime.component import is_component
from routeiq.runtime.wasm_runtime import WasmRuntime

from .component_plugin import ComponentPlugin
from .plugin import EventSink, ProxyWasmPlugin
from .plugin_spec import PluginSpec
from .quarantine import Clock


def load_plugin(
    spec: PluginSpec,
    runtime: WasmRuntime,
    log_sink: LogSink | None = None,
    policy: PolicyModel | None = None,
    services: HostServices | None = None,
    on_event: EventSink | None = None,
    clock: Clock = time.monotonic,
) -> ProxyWasmPlugin:
    try:
        with open(spec.wasm_path, "rb") as f:
            header = f.read(8)
    except OSError:
        header = b""  # ProxyWasmPlugin reports the unreadable file
    kind = ComponentPlugin if is_component(header) else ProxyWasmPlugin
    return kind(spec, runtime, log_sink, policy, services, on_event, clock)
