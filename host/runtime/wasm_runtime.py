"""The process-wide Wasm runtime an app owns: engine, epoch ticker, compiled-module and
compiled-component caches."""

from __future__ import annotations

from pathlib import Path

import wasmtime

from .component_cache import ComponentCache
from .engine import EngineSettings, EpochTicker, create_engine
from .module_cache import ModuleCache


class WasmRuntime:
    def __init__(self, settings: EngineSettings | None = None, cache_dir: Path | None = None) -> None:
        self.settings = settings or EngineSettings()
        self.engine: wasmtime.Engine = create_engine(self.settings)
        self.cache = ModuleCache(self.engine, self.settings, cache_dir)
        self.component_cache = ComponentCache(self.engine, self.settings, cache_dir)
        self._ticker = EpochTicker(self.engine, self.settings.epoch_tick_ms)
        self._ticker.start()

    def compile(self, wasm: bytes, sha256: str | None = None) -> wasmtime.Module:
        return self.cache.load(wasm, sha256)

    def close(self) -> None:
        self._ticker.stop()
