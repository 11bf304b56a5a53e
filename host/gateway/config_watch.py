"""Watches the main config file and applies what can change live, with the same validation
as at startup. Plugin configuration changes go through proxy_on_configure; a changed module
is hot-swapped; anything else (plugins added or removed, server, upstream, policy) is
reported as needing a restart. A file that fails validation changes nothing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from routeiq.config import ConfigError, load_config
from routeiq.runtime.errors import PluginError

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("routeiq.config")


class ConfigWatcher:
    def __init__(self, gateway: "Gateway", path: Path, interval_s: float = 1.0) -> None:
        self.gateway = gateway
        self.path = path
        self.interval_s = interval_s
        self._mtime = self._stat()
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.last_error: str | None = None

    def _stat(self) -> float:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            mtime = self._stat()
            if mtime != self._mtime:
                self._mtime = mtime
                self.reload()

    def reload(self) -> None:
        try:
            fresh = load_config(self.path)
            specs = {s.name: s for s in fresh.plugin_specs()}
        except ConfigError as exc:
            self.last_error = str(exc)
            log.error("config reload refused, keeping the running configuration:\n%s", exc)
            return
        gateway = self.gateway
        current = {p.spec.name: p for p in gateway.plugins}
        if set(specs) != set(current) | {f["name"] for f in gateway.failed_plugins}:
            log.warning("config reload: plugins were added or removed; that takes a restart")
        problems = []
        for name, plugin in current.items():
            spec = specs.get(name)
            if spec is None:
                continue
            try:
                if spec.wasm_path.resolve() != plugin.spec.wasm_path.resolve() or (spec.sha256 and spec.sha256 != plugin.sha256):
                    gateway.swap_module(name, spec.wasm_path.read_bytes())
                    plugin = gateway.plugin(name)
                if spec.plugin_config != plugin.spec.plugin_config:
                    plugin.reconfigure(spec.plugin_config)
                    gateway.admin_state.clear_config(name)  # the file is the newer word now
            except (PluginError, OSError) as exc:
                problems.append(f"plugin {name}: {exc}")
        self.reloads += 1
        self.last_error = "; ".join(problems) or None
        if problems:
            log.error("config reload applied partly: %s", self.last_error)
        else:
            log.warning("config reloaded from %s", self.path)
