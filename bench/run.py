"""Run the benchmarks and write bench/results/*.md: one table per benchmark module, with
the machine, the date, the command, and each goal met or the measured gap.

Usage: ./dev bench [extra pytest args]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


@dataclass
class Report:
    file: str
    title: str
    intro: str
    labels: dict[str, str]
    goals: Callable[[dict[str, float]], list[str]]  # medians in µs by test name -> goal lines


def _hook_goals(m: dict[str, float]) -> list[str]:
    rust = m.get("test_rust_guest_routeiq_host")
    if rust is None:
        return []
    verdict = "met" if rust <= 10.0 else f"NOT met (gap {rust - 10.0:.2f} µs)"
    return [f"Target: Rust guest through the host at most 10 µs median: {verdict} ({rust:.2f} µs)."]


def _routing_goals(m: dict[str, float]) -> list[str]:
    slow = {k: v for k, v in m.items() if v >= 1000.0}
    if not m:
        return []
    if not slow:
        return [f"Target: every strategy under 1 ms median: met (slowest {max(m.values()):.1f} µs)."]
    return [f"Target: every strategy under 1 ms median: NOT met for {', '.join(sorted(slow))}."]


def _llm_goals(m: dict[str, float]) -> list[str]:
    direct, passthrough, litellm = (m.get(k) for k in ("test_upstream_direct", "test_gateway_passthrough", "test_gateway_via_litellm_router"))
    if None in (direct, passthrough, litellm):
        return []
    return [
        f"Gateway overhead over the direct call (median): pass-through {passthrough - direct:.0f} µs, "  # type: ignore[operator]
        f"litellm Router {litellm - direct:.0f} µs; the pass-through path saves {litellm - passthrough:.0f} µs per request "  # type: ignore[operator]
        f"({litellm / passthrough:.1f}x faster end to end)."  # type: ignore[operator]
    ]


def _python_guest_goals(m: dict[str, float]) -> list[str]:
    host = m.get("test_python_guest_routeiq_host")
    if host is None:
        return []
    verdict = "met" if host <= 150.0 else f"NOT met (gap {host - 150.0:.2f} µs)"
    return [f"Target: Python guest through the component host path at most 150 µs median: {verdict} ({host:.2f} µs)."]


def _language_goals(m: dict[str, float]) -> list[str]:
    python = m.get("test_tagger_request_headers[python]")
    lines = ["Same filter logic in every row; Python runs as a component (componentize-py), the others as core modules."]
    if python is not None:
        verdict = "met" if python <= 150.0 else f"NOT met (gap {python - 150.0:.1f} µs)"
        lines.append(f"Target: a Python request-headers hook at most 150 µs median: {verdict} ({python:.1f} µs).")
    return lines


REPORTS = {
    "test_hook_overhead.py": Report(
        "hook_overhead.md",
        "Hook overhead: one `proxy_on_request_headers` round trip",
        "10 request headers; the hook reads one (`x-api-key`) and adds one. Same logic in every row.",
        {
            "test_rust_guest_routeiq_host": "Rust guest, RouteIQ host (unchecked calls)",
            "test_native_python_hook": "Native Python hook",
            "test_rust_guest_wasmtime_py_default_path": "Rust guest, wasmtime-py default `Func.__call__` path",
        },
        _hook_goals,
    ),
    "test_python_guest.py": Report(
        "python_guest.md",
        "Python guest hook: one `on-request-headers` round trip (WebAssembly component)",
        "A componentize-py component (guest-examples/python/py_bench_headers): 10 request headers, the hook reads one "
        "(`x-api-key`) and adds one, as the Rust bench_headers guest does.",
        {
            "test_python_guest_routeiq_host": "Python guest, RouteIQ component host path",
            "test_python_guest_wasmtime_py_component_api": "Python guest, wasmtime-py generic component API",
        },
        _python_guest_goals,
    ),
    "test_routing_decision.py": Report(
        "routing_decision.md",
        "Routing decision: `choose()` over 6 deployments",
        "Learned strategies fitted on the NQ routing data; each call routes the next real query (features included).",
        {},
        _routing_goals,
    ),
    "test_language_overhead.py": Report(
        "language_overhead.md",
        "Per-language hook overhead: the tagger filter's `proxy_on_request_headers`",
        "10 request headers; the filter checks a deny header and the path, then adds one header. One round trip through the RouteIQ host.",
        {
            "test_tagger_request_headers[rust]": "Rust (core module)",
            "test_tagger_request_headers[c]": "C (core module, zig cc)",
            "test_tagger_request_headers[assemblyscript]": "AssemblyScript (core module)",
            "test_tagger_request_headers[python]": "Python (component)",
        },
        _language_goals,
    ),
    "test_llm_path.py": Report(
        "llm_path.md",
        "LLM hot path: one non-streaming chat completion on loopback",
        "Client -> gateway (no plugins) -> mock upstream, gateway and upstream in their own processes; "
        "the deployment called directly (OpenAI-compatible pass-through) or through litellm's Router.",
        {
            "test_upstream_direct": "Upstream called directly (no gateway)",
            "test_gateway_passthrough": "Through RouteIQ, pass-through",
            "test_gateway_via_litellm_router": "Through RouteIQ, litellm Router",
        },
        _llm_goals,
    ),
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}, wasmtime-py {version('wasmtime')}"


def main(argv: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", f"--benchmark-json={out}", *argv]
        code = subprocess.call(cmd)
        if code != 0:
            return code
        data = json.loads(out.read_text())
    by_module: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for bench in data["benchmarks"]:
        module = bench["fullname"].split("::", 1)[0].rsplit("/", 1)[-1]
        by_module.setdefault(module, []).append(bench)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for module, benches in by_module.items():
        report = REPORTS.get(module)
        if report is None:
            continue
        lines = [
            f"# {report.title}",
            "",
            report.intro,
            "",
            f"- Machine: {machine()}",
            f"- Date: {stamp}",
            f"- Command: `./dev bench` (pytest-benchmark; `bench/{module}`)",
            "",
            "| Case | median (µs) | mean (µs) | min (µs) | rounds |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for b in sorted(benches, key=lambda b: b["stats"]["median"]):
            s = b["stats"]
            label = report.labels.get(b["name"], b["name"])
            lines.append(f"| {label} | {s['median'] * 1e6:.2f} | {s['mean'] * 1e6:.2f} | {s['min'] * 1e6:.2f} | {s['rounds']} |")
        goal_lines = report.goals({b["name"]: b["stats"]["median"] * 1e6 for b in benches})
        if goal_lines:
            lines += [""] + goal_lines
        (RESULTS / report.file).write_text("\n".join(lines) + "\n")
        print("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
