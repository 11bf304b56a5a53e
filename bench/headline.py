"""The README's headline table, rebuilt from the latest bench/results/*.json after each
`./dev bench`, between the `<!-- bench:headline -->` markers in README.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from goals import ADDED_P50_MS, EXTISM_RATIO, LITELLM_RPS_RATIO, PYTHON_HOOK_US, RUST_HEADERS_HOOK_US  # bench/goals.py

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
START, END = "<!-- bench:headline -->", "<!-- /bench:headline -->"


def _load(name: str) -> Any:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _hook_rows(medians: dict[str, dict[str, float]]) -> list[str]:
    cells = medians.get("test_hook_matrix.py", {})

    def cell(row: str, column: str) -> float | None:
        return cells.get(f"test_hook[{row}-{column}]")

    rows = []
    rust, extism, wasmtime_py = cell("request_headers", "rust"), cell("request_headers", "extism"), cell("request_headers", "wasmtime-py")
    if rust is not None and extism is not None:
        rows.append(
            f"| Request-headers hook, Rust guest (10 headers, read one, add one) | {rust:.2f} µs | Extism {extism:.1f} µs "
            f"({extism / rust:.1f}x slower); wasmtime-py default path {wasmtime_py or float('nan'):.1f} µs | ≤ {RUST_HEADERS_HOOK_US:g} µs and ≥ {EXTISM_RATIO:g}x Extism: {_verdict(rust <= RUST_HEADERS_HOOK_US and extism / rust >= EXTISM_RATIO)} |"
        )
    python = {k.split("[", 1)[1].rsplit("-", 1)[0]: v for k, v in cells.items() if k.endswith("-python]")}
    if python:
        worst_row = max(python, key=python.__getitem__)
        rows.append(
            f"| Same hooks, Python component guest | {python.get('request_headers', float('nan')):.1f} µs (headers); slowest row "
            f"`{worst_row}` {python[worst_row]:.0f} µs | | ≤ {PYTHON_HOOK_US:g} µs every row: {_verdict(python[worst_row] <= PYTHON_HOOK_US)} |"
        )
    return rows


def _load_rows(load: dict[str, Any]) -> list[str]:
    def find(scenario: str, stream: bool, connections: int) -> dict[str, Any] | None:
        for m in load["measurements"]:
            if m["scenario"] == scenario and m["curve"] == "main" and m["stream"] == stream and m["connections"] == connections:
                return m
        return None

    rows = []
    for stream in (False, True):
        mode = "streaming" if stream else "non-streaming"
        direct, three = find("direct", stream, 1), find("routeiq-3", stream, 1)
        if direct and three:
            added = three["wrk"]["p50_ms"] - direct["wrk"]["p50_ms"]
            rows.append(f"| Added p50 latency, 3 Wasm plugins, {mode} (1 connection) | +{added:.2f} ms | | ≤ {ADDED_P50_MS:g} ms: {_verdict(added <= ADDED_P50_MS)} |")
    for stream in (False, True):
        mode = "streaming" if stream else "non-streaming"
        three, litellm = find("routeiq-3", stream, 32), find("litellm-proxy", stream, 32)
        if three and litellm and litellm["wrk"]["rps"]:
            ratio = three["wrk"]["rps"] / litellm["wrk"]["rps"]
            rows.append(
                f"| Throughput, 3 Wasm plugins, {mode} (32 connections, 1 worker) | {three['wrk']['rps']:.0f} RPS | LiteLLM proxy "
                f"{litellm['wrk']['rps']:.0f} RPS ({ratio:.1f}x) | ≥ {LITELLM_RPS_RATIO:g}x LiteLLM proxy: {_verdict(ratio >= LITELLM_RPS_RATIO)} |"
            )
    return rows


def _footprint_rows(footprint: dict[str, Any]) -> list[str]:
    cold = footprint["cold_start_s"]
    per_vm = footprint["kib_per_vm"]
    rows = []
    empty = next((v for k, v in cold.items() if k.startswith("10 Rust") and "empty" in k), None)
    warm = next((v for k, v in cold.items() if k.startswith("10 Rust") and "warm" in k), None)
    if empty is not None and warm is not None:
        rows.append(f"| Cold start to first `/health`, 10 Rust plugins | {warm:.2f} s with the compile cache, {empty:.2f} s without | | |")
    rust = next((v for k, v in per_vm.items() if k.startswith("Rust")), None)
    python = next((v for k, v in per_vm.items() if k.startswith("Python")), None)
    hundred = footprint.get("mib_for_100_vms", {})
    rust_100 = next((v for k, v in hundred.items() if k.startswith("Rust")), None)
    python_100 = next((v for k, v in hundred.items() if k.startswith("Python")), None)
    if rust is not None:
        text = f"Rust {rust:.0f} KiB" + (f", Python component {python / 1024:.1f} MiB" if python else "")
        if rust_100 is not None:
            text += f" (100 VMs: Rust {rust_100:.0f} MiB" + (f", Python {python_100 / 1024:.1f} GiB" if python_100 else "") + ")"
        rows.append(f"| Resident memory per plugin VM | {text} | | |")
    return rows


def headline() -> str:
    rows = ["| Measure | RouteIQ | Peer | Goal |", "| --- | --- | --- | --- |"]
    medians, load, footprint = _load("medians.json"), _load("load.json"), _load("footprint.json")
    if medians:
        rows += _hook_rows(medians)
    if load:
        rows += _load_rows(load)
    if footprint:
        rows += _footprint_rows(footprint)
    return "\n".join(rows)


def update_readme() -> None:
    text = README.read_text()
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} section; headline not written")
        return
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{headline()}\n{END}{tail}")
    print(headline())


if __name__ == "__main__":
    update_readme()
