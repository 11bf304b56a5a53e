"""What the gateway needs to run one plugin, as the config file (or an admin change) gives it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from routeiq.abi.proxy_wasm import LogLevel
from routeiq.policy.manifest import PluginManifest
from routeiq.runtime.limits import SandboxLimits


@dataclass
class PluginSpec:
    """What the gateway needs to run one plugin (built from the config file)."""

    name: str
    wasm_path: Path
    kind: str = "filter"  # filter: on the request path; service: a root context only (Envoy's WasmService)
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


