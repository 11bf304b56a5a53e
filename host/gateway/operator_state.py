"""Operator changes made through the admin API, persisted so they survive a restart.

<state_dir>/plugins/<name>.json holds a plugin's config and module overrides, the manifest
a swapped-in module kept from its predecessor, and a manual quarantine;
<state_dir>/modules/<sha256>.wasm holds uploaded modules (content-addressed), written only
once the module was accepted. Every write is atomic (temp file + rename), so a crash
leaves the old state or the new, never half.

In a cluster (services/cluster_record.py) this directory is the node's mirror of the
cluster's record: what the node runs and restarts with while Redis is away, and what it
writes back if Redis comes back empty. <state_dir>/cluster.json holds the cluster version
the mirror reflects."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.policy.manifest import PluginManifest


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class OperatorState:
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

    def module_path(self, wasm: bytes) -> Path:
        """Where `wasm` is kept once accepted (nothing is written here)."""
        return self.directory / "modules" / f"{hashlib.sha256(wasm).hexdigest()}.wasm"

    def store_module(self, wasm: bytes) -> Path:
        """Keep an accepted module; call only after it loaded and started."""
        path = self.module_path(wasm)
        if not path.exists():
            _atomic_write(path, wasm)
        return path

    def save_module(self, name: str, module: Path, kept_manifest: PluginManifest | None = None) -> None:
        """`kept_manifest`: the predecessor's manifest, when the new module carries none."""
        state = self.load(name)
        state["module"] = str(module)
        if kept_manifest is not None:
            state["manifest"] = kept_manifest.model_dump(mode="json", exclude_none=True)
        else:
            state.pop("manifest", None)
        self._save(name, state)

    def clear_module(self, name: str) -> None:
        state = self.load(name)
        if state.pop("module", None) is not None:
            state.pop("manifest", None)
            self._save(name, state)

    def save_quarantine(self, name: str, reason: str) -> None:
        state = self.load(name)
        state["quarantine"] = reason
        self._save(name, state)

    def clear_quarantine(self, name: str) -> None:
        state = self.load(name)
        if state.pop("quarantine", None) is not None:
            self._save(name, state)

    def quarantine_reason(self, name: str) -> str | None:
        """The reason of a manual quarantine still in force (until released)."""
        reason = self.load(name).get("quarantine")
        return reason if isinstance(reason, str) else None

    def names(self) -> list[str]:
        """Plugins with operator state."""
        return sorted(p.stem for p in (self.directory / "plugins").glob("*.json"))

    def module_sha(self, name: str) -> str | None:
        """sha256 of the swapped-in module (its file is named by it), if any."""
        module = self.load(name).get("module")
        return Path(module).stem if isinstance(module, str) else None

    def record_fields(self, name: str) -> dict[str, str]:
        """The operator state of `name` as cluster record fields (config, module sha256,
        manifest JSON, quarantine)."""
        state = self.load(name)
        fields: dict[str, str] = {}
        if isinstance(state.get("config"), str):
            fields["config"] = state["config"]
        sha = self.module_sha(name)
        if sha is not None:
            fields["module"] = sha
            if "manifest" in state:
                fields["manifest"] = json.dumps(state["manifest"], separators=(",", ":"), sort_keys=True)
        if isinstance(state.get("quarantine"), str):
            fields["quarantine"] = state["quarantine"]
        return fields

    def applied_version(self) -> int | None:
        """The cluster version this mirror reflects (None: never part of a cluster)."""
        try:
            return int(json.loads((self.directory / "cluster.json").read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def set_applied_version(self, version: int) -> None:
        _atomic_write(self.directory / "cluster.json", json.dumps({"version": version}).encode())

    def overrides(self, name: str) -> set[str]:
        """Which fields operators changed: "config", "module"."""
        return {k for k in ("config", "module") if k in self.load(name)}

    def apply(self, spec: PluginSpec) -> PluginSpec:
        """The spec with what operators changed since the config file was written."""
        state = self.load(spec.name)
        if "config" in state:
            spec = replace(spec, plugin_config=state["config"].encode())
        if "module" in state and Path(state["module"]).exists():
            kept = PluginManifest.model_validate(state["manifest"]) if "manifest" in state else None
            spec = replace(spec, wasm_path=Path(state["module"]), sha256=None, manifest=kept)
        return spec
