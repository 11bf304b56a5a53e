"""Run the benchmarks and write bench/results/*.md: one table per benchmark module, with
the machine, the date, the command, and each goal met or the measured gap (the hook
matrix is pivoted, rows x columns, and also drawn as bench/results/hook_matrix.png).

Usage: ./dev bench [--only hooks,footprint,python_build,chain,load,slow_callbacks,replicas,mcp] [--quick] [pytest args for the hooks stage]
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
from typing import Any, Callable

from goals import EXTISM_RATIO, KEY_AUTH_US, PYTHON_HOOK_US, RUST_HEADERS_HOOK_US  # bench/goals.py

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


Bench = dict[str, Any]  # one entry of pytest-benchmark's JSON "benchmarks"


@dataclass
class Report:
    file: str
    title: str
    intro: str
    labels: dict[str, str]
    goals: Callable[[dict[str, float]], list[str]]  # medians in µs by test name -> goal lines
    table: Callable[["Report", list[Bench]], list[str]] | None = None  # None: one row per case
    chart: Callable[[list[Bench], Path, str], str] | None = None  # writes a picture, returns its file name


def _case_table(report: Report, benches: list[Bench]) -> list[str]:
    lines = ["| Case | median (µs) | mean (µs) | min (µs) | rounds |", "| --- | ---: | ---: | ---: | ---: |"]
    for b in sorted(benches, key=lambda b: b["stats"]["median"]):
        s = b["stats"]
        label = report.labels.get(b["name"], b["name"])
        lines.append(f"| {label} | {s['median'] * 1e6:.2f} | {s['mean'] * 1e6:.2f} | {s['min'] * 1e6:.2f} | {s['rounds']} |")
    return lines


# ------------------------------------------------------------------ hook matrix (pivot)
def _pivot(benches: list[Bench]) -> tuple[list[str], list[str], dict[tuple[str, str], Bench]]:
    """Rows and columns in the order pytest ran them (the parametrize order), and the cells."""
    rows: dict[str, None] = {}
    columns: dict[str, None] = {}
    cells: dict[tuple[str, str], Bench] = {}
    for b in benches:
        row, column = b["params"]["row"], b["params"]["column"]
        rows.setdefault(row)
        columns.setdefault(column)
        cells[(row, column)] = b
    return list(rows), list(columns), cells


def _p99(b: Bench) -> float:
    """Over the timed rounds (each round's time per call); the max when no data was kept."""
    data = sorted(b["stats"].get("data") or [b["stats"]["max"]])
    return data[int(0.99 * (len(data) - 1))]


def _us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:.1f}" if us < 100 else f"{us:.0f}"


def _matrix_table(report: Report, benches: list[Bench]) -> list[str]:
    rows, columns, cells = _pivot(benches)

    def table(cell: Callable[[Bench], str]) -> list[str]:
        out = ["| hook | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
        for row in rows:
            out.append(f"| {row} | " + " | ".join(cell(cells[(row, c)]) if (row, c) in cells else "-" for c in columns) + " |")
        return out

    return [
        "Median µs per callback round trip:",
        "",
        *table(lambda b: _us(b["stats"]["median"])),
        "",
        "min / p99 µs (p99 of the timed rounds; the tail is noisy on a shared machine):",
        "",
        *table(lambda b: f"{_us(b['stats']['min'])} / {_us(_p99(b))}"),
    ]


def _matrix_chart(benches: list[Bench], out: Path, subtitle: str) -> str:
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the PNG
    import matplotlib.pyplot as plt

    rows, columns, cells = _pivot(benches)
    fig, ax = plt.subplots(figsize=(13, 6.5), dpi=110)
    width = 0.8 / len(columns)
    colors = plt.get_cmap("tab10").colors
    for i, column in enumerate(columns):
        xs = [r + (i - (len(columns) - 1) / 2) * width for r, row in enumerate(rows) if (row, column) in cells]
        ys = [cells[(row, column)]["stats"]["median"] * 1e6 for row in rows if (row, column) in cells]
        ax.bar(xs, ys, width, label=column, color=colors[i % len(colors)])
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), rows)
    ax.set_ylabel("median µs per callback (log scale, lower is better)")
    ax.set_title(f"Per-hook overhead: the same filter logic in every column\n{subtitle}", fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(ncol=len(columns), loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out.name


def _routing_goals(m: dict[str, float]) -> list[str]:
    slow = {k: v for k, v in m.items() if v >= 1000.0}
    if not m:
        return []
    if not slow:
        return [f"Target: every strategy under 1 ms median: met (slowest {max(m.values()):.1f} µs)."]
    return [f"Target: every strategy under 1 ms median: NOT met for {', '.join(sorted(slow))}."]


def _llm_goals(m: dict[str, float]) -> list[str]:
    lines = _key_goals(m)
    direct, passthrough, litellm = (m.get(k) for k in ("test_upstream_direct", "test_gateway_passthrough", "test_gateway_via_litellm_router"))
    if None in (direct, passthrough, litellm):
        return lines
    return lines + [
        f"Gateway overhead over the direct call (median): pass-through {passthrough - direct:.0f} µs, "  # type: ignore[operator]
        f"litellm Router {litellm - direct:.0f} µs; the pass-through path saves {litellm - passthrough:.0f} µs per request "  # type: ignore[operator]
        f"({litellm / passthrough:.1f}x faster end to end)."  # type: ignore[operator]
    ]


def _key_goals(m: dict[str, float]) -> list[str]:
    anonymous, keyed = m.get("test_gateway_passthrough_keys_on_unauthenticated"), m.get("test_gateway_passthrough_keys_on_authenticated")
    if anonymous is None or keyed is None:
        return []
    extra = keyed - anonymous
    verdict = "met" if extra <= KEY_AUTH_US else "NOT met"
    return [f"Target: an authenticated request adds <= {KEY_AUTH_US:.0f} µs median over an unauthenticated one: {verdict} ({extra:+.0f} µs)."]


def _python_guest_goals(m: dict[str, float]) -> list[str]:
    host = m.get("test_python_guest_routeiq_host")
    if host is None:
        return []
    verdict = "met" if host <= PYTHON_HOOK_US else f"NOT met (gap {host - PYTHON_HOOK_US:.2f} µs)"
    return [f"Target: Python guest through the component host path at most {PYTHON_HOOK_US:g} µs median: {verdict} ({host:.2f} µs)."]


def _language_goals(m: dict[str, float]) -> list[str]:
    python = m.get("test_tagger_request_headers[python]")
    lines = ["Same filter logic in every row; Python runs as a component (componentize-py), the others as core modules."]
    if python is not None:
        verdict = "met" if python <= PYTHON_HOOK_US else f"NOT met (gap {python - PYTHON_HOOK_US:.1f} µs)"
        lines.append(f"Target: a Python request-headers hook at most {PYTHON_HOOK_US:g} µs median: {verdict} ({python:.1f} µs).")
    return lines


def _matrix_goals(m: dict[str, float]) -> list[str]:
    def cell(row: str, column: str) -> float | None:
        return m.get(f"test_hook[{row}-{column}]")

    lines = []
    rust, extism = cell("request_headers", "rust"), cell("request_headers", "extism")
    if rust is not None:
        verdict = "met" if rust <= RUST_HEADERS_HOOK_US else f"NOT met (gap {rust - RUST_HEADERS_HOOK_US:.2f} µs)"
        lines.append(f"- Target: Rust `request_headers` at most {RUST_HEADERS_HOOK_US:g} µs median: {verdict} ({rust:.2f} µs).")
    if rust is not None and extism is not None:
        ratio = extism / rust
        verdict = "met" if ratio >= EXTISM_RATIO else "NOT met"
        lines.append(f"- Target: Rust at least {EXTISM_RATIO:g}x faster than Extism on `request_headers`: {verdict} ({ratio:.1f}x: {rust:.2f} vs {extism:.2f} µs).")
    python = {k.split("[", 1)[1].rsplit("-", 1)[0]: v for k, v in m.items() if k.endswith("-python]")}
    if python:
        over = {row: v for row, v in python.items() if v > PYTHON_HOOK_US}
        if not over:
            lines.append(f"- Target: Python component at most {PYTHON_HOOK_US:g} µs median on every row: met (slowest {max(python.values()):.1f} µs).")
        else:
            gaps = ", ".join(f"{row} {v:.0f} µs (gap {v - PYTHON_HOOK_US:.0f} µs)" for row, v in over.items())
            lines.append(f"- Target: Python component at most {PYTHON_HOOK_US:g} µs median on every row: NOT met for {gaps}.")
    return lines


REPORTS = {
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
        "Routing decision: `choose()` over 6 (NQ) and 9 (routerdc) deployments",
        "Learned strategies fitted on the NQ routing data (all 400 rows) and on 2,000 rows of routerdc; each call routes the next real query (features included).",
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
    "test_hook_matrix.py": Report(
        "hook_matrix.md",
        "Per-hook overhead matrix: one callback, the same logic in every column",
        "Rows are callbacks (10 request headers; bodies are 1 KiB / 64 KiB JSON with `secret` masked in place; a 512-byte "
        "response chunk counted; a shared-data counter += 1 with CAS; a callout refused without the `http_callout` grant "
        "and audited). Columns: native Python hooks; the bench_filter guest in Rust, C, AssemblyScript and Python "
        "(component) through RouteIQ's host; the Rust guest through wasmtime-py's default API; an equivalent Extism "
        "plugin (C, `bench/extism_guest/`) through Extism's Python SDK (rows as input/output, KV and callout as host "
        "functions). Every column runs under the default sandbox limits.",
        {},
        _matrix_goals,
        table=_matrix_table,
        chart=_matrix_chart,
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
            "test_gateway_embeddings_passthrough": "Embeddings through RouteIQ, pass-through",
            "test_gateway_anthropic_messages_passthrough": "Anthropic /v1/messages through RouteIQ (translated to chat), pass-through",
            "test_gateway_passthrough_keys_on_unauthenticated": "Keys on: chat pass-through on a path that needs no key",
            "test_gateway_passthrough_keys_on_authenticated": "Keys on: chat pass-through with a virtual key (cached record)",
        },
        _llm_goals,
    ),
}


def machine() -> str:
    from importlib.metadata import version

    from machine import cpu_model  # bench/machine.py

    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}, wasmtime-py {version('wasmtime')}"


STAGES = ("hooks", "footprint", "python_build", "chain", "load", "slow_callbacks", "replicas", "mcp")


def run_pytest_benchmarks(pytest_args: list[str]) -> int:
    """pytest-benchmark over bench/test_*.py; one Markdown report (and chart) per module,
    plus bench/results/medians.json for the headline table."""
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", f"--benchmark-json={out}", *pytest_args]
        code = subprocess.call(cmd)
        if code != 0:
            return code
        data = json.loads(out.read_text())
    by_module: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for bench in data["benchmarks"]:
        module = bench["fullname"].split("::", 1)[0].rsplit("/", 1)[-1]
        by_module.setdefault(module, []).append(bench)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    medians_path = RESULTS / "medians.json"
    medians = json.loads(medians_path.read_text()) if medians_path.exists() else {}
    for module, benches in by_module.items():
        medians[module] = {b["name"]: round(b["stats"]["median"] * 1e6, 3) for b in benches}
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
            *(report.table or _case_table)(report, benches),
        ]
        if report.chart is not None:
            picture = report.chart(benches, RESULTS / Path(report.file).with_suffix(".png").name, f"{machine()}, {stamp}")
            lines += ["", f"![{report.title}]({picture})"]
        goal_lines = report.goals({b["name"]: b["stats"]["median"] * 1e6 for b in benches})
        if goal_lines:
            lines += [""] + goal_lines
        (RESULTS / report.file).write_text("\n".join(lines) + "\n")
        print("\n".join(lines) + "\n")
    medians_path.write_text(json.dumps(medians, indent=1, sort_keys=True) + "\n")
    return 0


def _run_stage(stage: str, quick: bool, pytest_args: list[str]) -> int:
    if stage == "hooks":
        return run_pytest_benchmarks(pytest_args)
    if stage == "footprint":
        import footprint

        return footprint.main([])
    if stage == "python_build":
        import python_build

        return python_build.main(["--rounds", "1"] if quick else [])
    if stage == "chain":
        import chain_cpu

        return chain_cpu.main((["--rounds", "3", "--requests", "500"] if quick else []) + ["--md", str(RESULTS / "chain_cpu.md")])
    if stage == "load":
        from load import run_load

        return run_load.main(["--quick"] if quick else [])
    if stage == "slow_callbacks":
        from load import slow_callbacks

        return slow_callbacks.main(["--seconds", "3"] if quick else [])
    if stage == "replicas":
        import replica_convergence

        return replica_convergence.main(["--rounds", "5"] if quick else [])
    import mcp_roundtrip

    return mcp_roundtrip.main(["--calls", "300"] if quick else [])


def main(argv: list[str]) -> int:
    """./dev bench [--only hooks,footprint,python_build,chain,load,slow_callbacks,replicas,mcp] [--quick] [pytest args for the hooks stage]"""
    stages: list[str] | None = None
    quick = False
    pytest_args: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--only":
            stages = next(args).split(",")
        elif arg.startswith("--only="):
            stages = arg.split("=", 1)[1].split(",")
        elif arg == "--quick":
            quick = True
        else:
            pytest_args.append(arg)
    if stages is None:
        # pytest arguments (say -k) select hook benchmarks: then only that stage runs.
        stages = ["hooks"] if pytest_args else list(STAGES)
    unknown = set(stages) - set(STAGES)
    if unknown:
        print(f"unknown stage(s) {', '.join(sorted(unknown))}; stages: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    from routeiq.progress import Progress

    # Each stage prints its own tables; the progress lines say which of them is running.
    progress = Progress()
    chosen = [stage for stage in STAGES if stage in stages]
    for n, stage in enumerate(chosen, 1):
        progress.step(f"bench stage {stage}", count=(n, len(chosen)))
        code = _run_stage(stage, quick, pytest_args)
        if code:
            progress.summary(f"bench: stage {stage} failed (exit {code})")
            return code
    progress.summary(f"bench: {len(chosen)} stage(s) ({', '.join(chosen)})")
    import headline

    headline.update_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
