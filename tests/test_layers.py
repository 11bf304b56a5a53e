"""The package layers read downward and no module imports another that imports it back.

Every `import routeiq...` counts, also one inside a function or under TYPE_CHECKING: a
lazy import is still a dependency, it only hides a cycle from the interpreter."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"routeiq": ROOT / "host", "routeiq.abi": ROOT / "abi", "routeiq.strategies": ROOT / "strategies"}

# Lowest first. A module may import its own package and any package of a lower tier.
TIERS: list[set[str]] = [
    {"abi", "strict_json", "log_format", "env_vars", "error_responses", "litellm_settings", "progress", "__init__"},
    {"runtime", "strategies"},
    {"policy", "toolchain", "distribution"},
    {"services", "identity"},
    {"hostcalls"},
    {"dispatch"},
    {"config"},
    {"llm", "native"},
    {"gateway"},
    {"admin"},
    {"mcp"},  # MCP tools and /mcp: tools on the runtime and policy, callers by admin and virtual keys
    {"console"},  # the operator console at /ui: pages over the admin API, sessions from admin
    {"app"},  # the composition root: builds the gateway and mounts admin, /metrics, /health
    {"toolkit", "config_reference", "demo_services"},
    {"keys_cli"},
    {"cli", "__main__"},
]
TIER = {package: rank for rank, packages in enumerate(TIERS) for package in packages}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for prefix, directory in SOURCES.items():
        for path in directory.rglob("*.py"):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import routeiq.x.y` where y is a name
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_tier() -> None:
    missing = sorted({top_package(m) for m in graph()} - TIER.keys())
    assert not missing, f"packages without a tier in tests/test_layers.py: {missing}"


def test_imports_only_go_down() -> None:
    upward = []
    for module, targets in graph().items():
        source = top_package(module)
        for target in targets:
            package = top_package(target)
            if package != source and TIER[package] > TIER[source]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that go up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
