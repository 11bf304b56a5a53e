"""Saving what a strategy learned, with a sha256 that is checked before anything is loaded.

File: JSON {name, version, options, state, created, sha256}; `sha256` covers the canonical
JSON (sorted keys, no spaces) of every other field, so a changed state, name or option is
refused, not silently routed with.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from .base import RoutingStrategy
from .registry import StrategyRegistry

FORMAT_VERSION = 1


class ArtifactError(Exception):
    pass


def _digest(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def save_artifact(strategy: RoutingStrategy, path: str | Path) -> str:
    """Write the artifact atomically; returns its sha256."""
    payload = {
        "name": strategy.name,
        "version": FORMAT_VERSION,
        "options": dict(strategy.options),
        "state": strategy.state(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        digest = _digest(payload)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{strategy.name}: state/options are not JSON-serialisable: {exc}") from exc
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**payload, "sha256": digest}, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return digest


def load_artifact(path: str | Path, registry: StrategyRegistry) -> RoutingStrategy:
    """Verify the sha256, then build the named strategy from the registry and load its state."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read artifact: {exc}") from exc
    if not isinstance(doc, dict) or not {"name", "version", "state", "sha256"} <= doc.keys():
        raise ArtifactError(f"{path}: not a routing artifact (needs name, version, state, sha256)")
    expected = doc.pop("sha256")
    actual = _digest(doc)
    if actual != expected:
        raise ArtifactError(f"{path}: sha256 mismatch: expected {expected}, actual {actual}; refusing to load")
    if doc["version"] != FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format version {doc['version']} is not supported (want {FORMAT_VERSION})")
    if doc["name"] not in registry:
        raise ArtifactError(f"{path}: strategy {doc['name']!r} is not registered")
    strategy = registry.create(doc["name"], **doc.get("options", {}))
    strategy.load_state(doc["state"])
    return strategy
