"""Operator changes made through the admin API, persisted so they survive a restart.

<state_dir>/plugins/<name>.json holds a plugin's config and module overrides;
<state_dir>/modules/<sha256>.wasm holds uploaded modules (content-addressed). Every write
is atomic (temp file + rename), so a crash leaves the old state or the new, never half."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from routeiq.dispatch.plugin import PluginSpec


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AdminState:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _plugin_file(self, name: str) -> Path:
        return self.directory / "plugins" / f"{name}.json"

    def load(self, name: str) -> dict[str, Any]:
        path = self._plugin_file(name)
        if not path.exists():
            return {}
        return json.loads(path.read_text())

    def _save(self, name: str, state: dict[str, Any]) -> None:
        _atomic_write(self._plugin_file(name), json.dumps(state, indent=2, sort_keys=True).encode())

    def save_config(self, name: str, config: bytes) -> None:
        state = self.load(name)
        state["config"] = config.decode("utf-8", "replace")
        self._save(name, state)

    def clear_config(self, name: str) -> None:
        state = self.load(name)
        if state.pop("config", None) is not None:
            self._save(name, state)

    def store_module(self, wasm: bytes) -> Path:
        path = self.directory / "modules" / f"{hashlib.sha256(wasm).hexdigest()}.wasm"
        if not path.exists():
            _atomic_write(path, wasm)
        return path

    def save_module(self, name: str, module: Path) -> None:
        state = self.load(name)
        state["module"] = str(module)
        self._save(name, state)

    def apply(self, spec: PluginSpec) -> PluginSpec:
        """The spec with what operators changed since the config file was written."""
        state = self.load(spec.name)
        if "config" in state:
            spec = replace(spec, plugin_config=state["config"].encode())
        if "module" in state and Path(state["module"]).exists():
            spec = replace(spec, wasm_path=Path(state["module"]), sha256=None)
        return spec
