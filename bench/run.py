"""Run the benchmarks and write bench/results/*.md (tables with machine and command).

Usage: ./dev bench [extra pytest args]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

LABELS = {
    "test_rust_guest_routeiq_host": "Rust guest, RouteIQ host (unchecked calls)",
    "test_native_python_hook": "Native Python hook",
    "test_rust_guest_wasmtime_py_default_path": "Rust guest, wasmtime-py default `Func.__call__` path",
}
TARGET_US = 10.0


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

    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, wasmtime-py {version('wasmtime')}"
    )


def main(argv: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", f"--benchmark-json={out}", *argv]
        code = subprocess.call(cmd)
        if code != 0:
            return code
        data = json.loads(out.read_text())
    rows = []
    for bench in sorted(data["benchmarks"], key=lambda b: b["stats"]["median"]):
        s = bench["stats"]
        rows.append((LABELS.get(bench["name"], bench["name"]), s["median"] * 1e6, s["mean"] * 1e6, s["min"] * 1e6, s["rounds"]))
    routeiq = next((r for r in rows if r[0] == LABELS["test_rust_guest_routeiq_host"]), None)
    lines = [
        "# Hook overhead: one `proxy_on_request_headers` round trip",
        "",
        "10 request headers; the hook reads one (`x-api-key`) and adds one. Same logic in every row.",
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "- Command: `./dev bench` (pytest-benchmark; `bench/test_hook_overhead.py`)",
        "",
        "| Hook | median (µs) | mean (µs) | min (µs) | rounds |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, median, mean, minimum, rounds in rows:
        lines.append(f"| {label} | {median:.2f} | {mean:.2f} | {minimum:.2f} | {rounds} |")
    if routeiq is not None:
        verdict = "met" if routeiq[1] <= TARGET_US else f"NOT met (gap {routeiq[1] - TARGET_US:.2f} µs)"
        lines += ["", f"Target: Rust guest through the host at most {TARGET_US:g} µs median — {verdict} ({routeiq[1]:.2f} µs)."]
    (RESULTS / "hook_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
