"""Loading native plugins, after the policy allowed them (before anything is imported)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from routeiq.policy.model import PolicyModel
from routeiq.runtime.errors import PluginLoadError

from .plugin import GatewayPlugin


def load_native(name: str, target: str, config: dict[str, Any], policy: PolicyModel | None, base_dir: Path) -> GatewayPlugin:
    entry = policy.plugins.get(name) if policy is not None else None
    if entry is None or not entry.native:
        raise PluginLoadError(f"native plugin {name!r} is not allowed: the policy must list it with `native: true` and `module: {target!r}`")
    if entry.module != target:
        raise PluginLoadError(f"native plugin {name!r}: the policy allows module {entry.module!r}, the config asks for {target!r}")
    module_part, _, class_name = target.partition(":")
    if not class_name:
        raise PluginLoadError(f"native plugin {name!r}: `python` must be 'module.path:ClassName' or 'file.py:ClassName'")
    try:
        if module_part.endswith(".py"):
            path = (base_dir / module_part).resolve()
            spec = importlib.util.spec_from_file_location(f"routeiq_native_{name}", path)
            if spec is None or spec.loader is None:
                raise PluginLoadError(f"native plugin {name!r}: cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_part)
    except PluginLoadError:
        raise
    except Exception as exc:  # an import error names the plugin and the cause
        raise PluginLoadError(f"native plugin {name!r}: importing {module_part} failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, GatewayPlugin)):
        raise PluginLoadError(f"native plugin {name!r}: {target} is not a GatewayPlugin subclass")
    return cls(config)
