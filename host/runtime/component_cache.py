"""Compiled components cached on disk beside compiled modules (same directory and engine
fingerprint, told apart by the `.component.cwasm` suffix)."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import wasmtime
from wasmtime import component as wc

from .engine import EngineSettings
from .errors import PluginLoadError
from .module_cache import ModuleCache

log = logging.getLogger("routeiq.runtime.cache")


class ComponentCache(ModuleCache):
    """ModuleCache for components: compile once, deserialize afterwards."""

    def __init__(self, engine: wasmtime.Engine, settings: EngineSettings, directory: Path | None) -> None:
        super().__init__(engine, settings, directory)
        self.last_seconds = 0.0
        self.last_hit = False

    def path_for(self, module_sha256: str) -> Path | None:
        if self._dir is None:
            return None
        return self._dir / f"{module_sha256}-{self._fingerprint}.component.cwasm"

    def load_component(self, wasm: bytes, sha256: str | None = None) -> wc.Component:
        began = time.perf_counter()
        digest = sha256 or hashlib.sha256(wasm).hexdigest()
        path = self.path_for(digest)
        component: wc.Component | None = None
        if path is not None and path.exists():
            try:
                component = wc.Component.deserialize_file(self._engine, str(path))
                self.hits += 1
                self.last_hit = True
            except wasmtime.WasmtimeError as exc:
                log.warning("discarding unusable component cache entry %s: %s", path, exc)
                path.unlink(missing_ok=True)
        if component is None:
            try:
                component = wc.Component(self._engine, wasm)
            except wasmtime.WasmtimeError as exc:
                first = str(exc).splitlines()[0]
                raise PluginLoadError(f"not a valid WebAssembly component: {first}") from None
            self.misses += 1
            self.last_hit = False
            if path is not None:
                self._store(path, component.serialize())
        self.last_seconds = time.perf_counter() - began
        return component
