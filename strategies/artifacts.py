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


def verify_artifact(doc: Any, where: str = "artifact") -> dict[str, Any]:
    """The artifact document `doc` (parsed JSON) without its sha256 once the digest, the
    format version and the fields are checked; ArtifactError says what is wrong."""
    if not isinstance(doc, dict) or not {"name", "version", "state", "sha256"} <= doc.keys():
        raise ArtifactError(f"{where}: not a routing artifact (needs name, version, state, sha256)")
    doc = dict(doc)
    expected = doc.pop("sha256")
    try:
        actual = _digest(doc)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: not canonical JSON: {exc}") from None
    if actual != expected:
        raise ArtifactError(f"{where}: sha256 mismatch: expected {expected}, actual {actual}; refusing to load")
    if doc["version"] != FORMAT_VERSION:
        raise ArtifactError(f"{where}: artifact format version {doc['version']} is not supported (want {FORMAT_VERSION})")
    if not isinstance(doc["name"], str) or not isinstance(doc.get("options", {}), dict) or not isinstance(doc["state"], dict):
        raise ArtifactError(f"{where}: name must be a string, options and state objects")
    return doc


def strategy_from(doc: Mapping[str, Any], cls: type[RoutingStrategy], overrides: Mapping[str, Any] | None = None) -> RoutingStrategy:
    """A new `cls` strategy with a verified artifact's options (updated by `overrides`, the
    config's router.strategy_options: a quality target or budget set after training) and its
    learned state."""
    strategy = cls(**{**doc.get("options", {}), **dict(overrides or {})})
    strategy.load_state(doc["state"])
    return strategy


def load_artifact(path: str | Path, registry: StrategyRegistry, overrides: Mapping[str, Any] | None = None) -> RoutingStrategy:
    """Verify the sha256, then build the named strategy from the registry and load its state."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read artifact: {exc}") from exc
    doc = verify_artifact(doc, str(path))
    if doc["name"] not in registry:
        raise ArtifactError(f"{path}: strategy {doc['name']!r} is not registered")
    try:
        return strategy_from(doc, registry.get(doc["name"]), overrides)
    except ValueError:  # StrategyOptionError: the caller names the field
        raise
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: the {doc['name']!r} state does not load: {type(exc).__name__}: {exc}") from None
