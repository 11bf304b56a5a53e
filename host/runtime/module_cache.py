"""Compiled modules cached on disk, keyed by module hash, wasmtime version and engine settings."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import wasmtime

from .engine import EngineSettings

log = logging.getLogger("routeiq.runtime.cache")


class ModuleCache:
    """Compile once, deserialize afterwards (a restart does not recompile).

    The directory is trusted operator state: deserializing native code from it is only
    safe because nobody else can write there.
    """

    def __init__(self, engine: wasmtime.Engine, settings: EngineSettings, directory: Path | None) -> None:
        self._engine = engine
        self._fingerprint = settings.fingerprint()
        self._dir = directory
        self.hits = 0
        self.misses = 0

    def path_for(self, module_sha256: str) -> Path | None:
        if self._dir is None:
            return None
        return self._dir / f"{module_sha256}-{self._fingerprint}.cwasm"

    def load(self, wasm: bytes, module_sha256: str | None = None) -> wasmtime.Module:
        digest = module_sha256 or hashlib.sha256(wasm).hexdigest()
        path = self.path_for(digest)
        if path is not None and path.exists():
            try:
                module = wasmtime.Module.deserialize_file(self._engine, str(path))
                self.hits += 1
                return module
            except wasmtime.WasmtimeError as exc:  # stale or corrupt entry: rebuild it
                log.warning("discarding unusable cache entry %s: %s", path, exc)
                path.unlink(missing_ok=True)
        module = wasmtime.Module(self._engine, wasm)
        self.misses += 1
        if path is not None:
            self._store(path, module.serialize())
        return module

    def _store(self, path: Path, data: bytes | bytearray) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: concurrent workers never see a torn file
        except OSError as exc:
            log.warning("cannot write module cache %s: %s", path, exc)
