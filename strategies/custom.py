"""Loading user strategies from a `custom_routers/` directory into a gateway's registry.

Every `*.py` file is imported from its path under a unique module name (no sys.path changes,
so a custom file cannot shadow a real package), and every RoutingStrategy subclass defined in
it is checked before it is registered: a wrong one is refused with the file, the class and
the problem in the message, at load time rather than on the first request.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Mapping

from .base import RoutingStrategy
from .registry import BUILTINS, StrategyRegistry


class CustomStrategyError(Exception):
    pass


def _import(path: Path) -> ModuleType:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"routeiq_custom_router_{path.stem}_{digest}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError("no loader for this file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses & pickling look modules up here
        spec.loader.exec_module(module)
    except Exception as exc:  # any error in user code: report which file and what it raised
        sys.modules.pop(module_name, None)
        raise CustomStrategyError(f"{path}: import failed: {type(exc).__name__}: {exc}") from exc
    return module


def check_strategy(
    cls: type[RoutingStrategy], path: Path, registry: StrategyRegistry, pending: Mapping[str, type[RoutingStrategy]] | None = None
) -> None:
    """Raise CustomStrategyError naming the file, the class and the problem."""
    where = f"{path}: class {cls.__name__}"
    name = cls.__dict__.get("name", getattr(cls, "name", None))
    if not isinstance(name, str) or not name.strip():
        raise CustomStrategyError(f"{where}: `name` must be a non-empty str class attribute, got {name!r}")
    if name in BUILTINS:
        raise CustomStrategyError(f"{where}: name {name!r} clashes with the built-in strategy {BUILTINS[name].__name__}")
    if name in registry:
        raise CustomStrategyError(f"{where}: name {name!r} is already registered by {registry.get(name).__qualname__}")
    if pending and name in pending:
        raise CustomStrategyError(f"{where}: name {name!r} is already used by {pending[name].__qualname__}")
    choose = inspect.getattr_static(cls, "choose", None)
    if choose is None or choose is RoutingStrategy.__dict__["choose"] or getattr(choose, "__isabstractmethod__", False):
        raise CustomStrategyError(f"{where}: does not implement choose(self, request, candidates)")
    if not inspect.isfunction(choose):
        raise CustomStrategyError(f"{where}: choose must be a plain method, got {type(choose).__name__}")
    params = list(inspect.signature(choose).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 3 or (len(positional) < 3 and not any(p.kind is p.VAR_POSITIONAL for p in params)):
        raise CustomStrategyError(
            f"{where}: choose must take (self, request, candidates), got ({', '.join(p.name for p in params)})"
        )
    if cls.__abstractmethods__:
        raise CustomStrategyError(f"{where}: abstract methods left unimplemented: {', '.join(sorted(cls.__abstractmethods__))}")
    init_params = inspect.signature(cls.__init__).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in init_params):
        raise CustomStrategyError(f"{where}: __init__ must accept **options (strategies are built with registry.create(name, **options))")


def load_custom_strategies(directory: str | Path, registry: StrategyRegistry) -> list[type[RoutingStrategy]]:
    """Import every *.py in `directory` (sorted, `_`-prefixed files skipped) and register each
    strategy class defined there. All or nothing: the first problem raises CustomStrategyError
    and nothing from the directory is registered."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CustomStrategyError(f"{directory}: not a directory")
    found: dict[str, type[RoutingStrategy]] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = _import(path)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, RoutingStrategy) and obj.__module__ == module.__name__:
                check_strategy(obj, path, registry, found)
                found[obj.name] = obj
    for cls in found.values():
        registry.register(cls)
    return list(found.values())
