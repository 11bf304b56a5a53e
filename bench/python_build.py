"""Python component builds (issue #18 item 3): build time, size, resident memory per VM.

Time: the `plugin new --lang python` template built with a cold cache, interleaved with
the floor (componentize-py on the same WIT world with a bare export class and no SDK), so
both see the same load; wall and CPU (user+sys of the child) with the 1-minute load
average before each run. Size: where the template's bytes go (core modules, data, code,
names). Memory: 10 VMs of the template in one process, growth per VM in RSS (what `ps`
shows; a page of the shared snapshot counts once per VM that maps it), PSS (shared pages
split between their users) and private anonymous memory.

Writes bench/results/python_build.md. Usage: ./dev bench --only python_build [--quick],
or `.venv/bin/python bench/python_build.py [--rounds N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BUILD_TARGET_S, SIZE_TARGET_MB, RSS_BEFORE_MB = 15.0, 10.0, 25.5  # issue #18's targets; RSS as measured before

FLOOR_ENTRY = """from wit_world import exports
Filter = type("Filter", (exports.Filter,), {n: (lambda self, *a: None) for n in exports.Filter.__abstractmethods__})
"""

MEMORY_PROBE = """
import json, re, sys
from pathlib import Path
from routeiq.dispatch.loader import load_plugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.wasm_runtime import WasmRuntime

def memory():
    text = Path("/proc/self/smaps_rollup").read_text()
    return {k: int(re.search(k + r":\\s+(\\d+)", text).group(1)) for k in ("Rss", "Pss", "Anonymous")}

module, count, cache = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
runtime = WasmRuntime(EngineSettings(), cache)
plugins = [load_plugin(PluginSpec("p0", module, plugin_config=b"{}"), runtime)]
plugins[0].start()  # the compiled component and a first VM: shared costs
before = memory()
for i in range(1, count + 1):
    plugins.append(load_plugin(PluginSpec(f"p{i}", module, plugin_config=b"{}"), runtime))
    plugins[-1].start()
after = memory()
print(json.dumps({k: (after[k] - before[k]) / count for k in after}))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build_template(work: Path, n: int) -> tuple[Path, float, float]:
    from routeiq.toolchain.paths import abi_dir
    from routeiq.toolchain.python import build_python_plugin
    from routeiq.toolkit.scaffold import scaffold

    project = scaffold("python", f"py_build_{n}", work)
    began, cpu = time.monotonic(), _children_cpu()
    out = build_python_plugin(project, project / "build", abi=abi_dir(), cache=work / f"cache-{n}")  # a cold cache: a real build
    return out, time.monotonic() - began, _children_cpu() - cpu


def build_floor(work: Path, n: int) -> tuple[Path, float, float]:
    from routeiq.toolchain.paths import abi_dir
    from routeiq.toolchain.python import WORLD, _RUN

    guest = work / f"floor-{n}"
    guest.mkdir()
    (guest / "floor_entry.py").write_text(FLOOR_ENTRY)
    empty = work / f"empty-{n}"
    (empty / "lib" / "site-packages").mkdir(parents=True)
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}, "VIRTUAL_ENV": str(empty)}
    out = guest / "floor.wasm"
    cmd = [sys.executable, "-c", _RUN, "--quiet", "-d", str(abi_dir() / "wit"), "-w", WORLD, "componentize", "floor_entry", "-p", str(guest), "-o", str(out)]
    began, cpu = time.monotonic(), _children_cpu()
    subprocess.run(cmd, check=True, env=env, cwd=guest, capture_output=True)
    return out, time.monotonic() - began, _children_cpu() - cpu


# ---------------------------------------------------------------- where the bytes go
def _leb(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _sections(data: bytes, start: int, end: int):  # type: ignore[no-untyped-def]
    i = start
    while i < end:
        size, j = _leb(data, i + 1)
        yield data[i], j, j + size
        i = j + size


def size_breakdown(path: Path) -> dict[str, float]:
    """MB by kind: each core module's data (the snapshot) and code, name sections, the rest."""
    data = path.read_bytes()
    out = {"total": len(data), "data (pre-initialised memory)": 0, "code": 0, "name sections": 0}
    modules = []
    for sid, a, z in _sections(data, 8, len(data)):
        if sid == 1:  # a core module inside the component
            modules.append(z - a)
            for inner, s, e in _sections(data, a + 8, z):
                if inner == 11:
                    out["data (pre-initialised memory)"] += e - s
                elif inner == 10:
                    out["code"] += e - s
                elif inner == 0:
                    name_len, k = _leb(data, s)
                    if data[k:k + name_len] == b"name":
                        out["name sections"] += e - s
    out["everything else"] = out["total"] - out["data (pre-initialised memory)"] - out["code"] - out["name sections"]
    result = {k: v / 1e6 for k, v in out.items()}
    result["core modules"] = len(modules)
    return result


def vm_memory(module: Path, work: Path, count: int = 10) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(module), str(count), str(work / "modules")], check=True, capture_output=True, text=True)
    return {k: v / 1024 for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}  # MiB per VM


def machine() -> str:
    from importlib.metadata import version

    from machine import cpu_model  # bench/machine.py

    return (f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"componentize-py {version('componentize-py')}, wasmtime-py {version('wasmtime')}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved build pairs (template, floor)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from routeiq.progress import Progress

    progress = Progress()
    runs: dict[str, list[tuple[float, float, float]]] = {"template": [], "floor": []}
    with tempfile.TemporaryDirectory(prefix="routeiq-pybuild-") as tmp:
        work = Path(tmp)
        template = floor = work
        for n in range(args.rounds):
            for label, build in (("template", build_template), ("floor", build_floor)):
                progress.step(f"round {n + 1}: {label} build", count=(2 * n + (label == "floor") + 1, 2 * args.rounds))
                load = os.getloadavg()[0]
                path, wall, cpu = build(work, n)
                runs[label].append((wall, cpu, load))
                template, floor = (path, floor) if label == "template" else (template, path)
                print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU, load {load:.1f}", flush=True)
        progress.step("sizes and memory per VM")
        sizes, floor_sizes = size_breakdown(template), size_breakdown(floor)
        memory = vm_memory(template, work)
    progress.summary("python_build")

    def med(label: str, i: int) -> float:
        return statistics.median(r[i] for r in runs[label])

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    loads = [r[2] for rs in runs.values() for r in rs]
    lines = [
        "# Python component builds: time, size, memory per VM (issue #18 item 3)",
        "",
        f"- Machine: {machine()}",
        f"- Date: {stamp}; 1-minute load average during the runs: {min(loads):.1f} to {max(loads):.1f} (2 cores shared with other jobs)",
        f"- Command: `./dev bench --only python_build` (`bench/python_build.py --rounds {args.rounds}`)",
        "",
        "## Build time (cold cache), median of interleaved runs",
        "",
        "| build | wall (s), median | wall (s), fastest | CPU user+sys (s), median | each run: wall s / CPU s / load |",
        "| --- | ---: | ---: | ---: | --- |",
        *[f"| {title} | {med(label, 0):.1f} | {min(r[0] for r in runs[label]):.1f} | {med(label, 1):.1f} | "
          + ", ".join(f"{w:.1f} / {c:.1f} / {ld:.1f}" for w, c, ld in runs[label]) + " |"
          for label, title in (("template", "`plugin new --lang python` template (routeiq_guest SDK)"), ("floor", "floor: same world, bare export class, no SDK"))],
        "",
        "## Size (deterministic)",
        "",
        "| MB | template | floor |",
        "| --- | ---: | ---: |",
        *[f"| {k} | {sizes[k]:.2f} | {floor_sizes[k]:.2f} |" for k in ("total", "data (pre-initialised memory)", "code", "name sections", "everything else")],
        "",
        "## Memory per VM (10 more VMs of the template in one process)",
        "",
        "| MiB per VM | RSS | PSS | private (anonymous) |",
        "| --- | ---: | ---: | ---: |",
        f"| template | {memory['Rss']:.1f} | {memory['Pss']:.1f} | {memory['Anonymous']:.1f} |",
        "",
        "## Targets",
        "",
        f"- Build <= {BUILD_TARGET_S:g} s: {'met' if med('template', 0) <= BUILD_TARGET_S else 'NOT met'} on the median wall time at this load "
        f"({med('template', 0):.1f} s; fastest run {min(r[0] for r in runs['template']):.1f} s). The build needs {med('template', 1):.1f} s of CPU, "
        f"the floor without the SDK {med('floor', 1):.1f} s: the wall time is that CPU divided by the share of the 2 cores the build gets.",
        f"- Size <= {SIZE_TARGET_MB:g} MB: {'met' if sizes['total'] <= SIZE_TARGET_MB else 'NOT met'} ({sizes['total']:.2f} MB; "
        f"the floor without the SDK is {floor_sizes['total']:.2f} MB).",
        f"- Resident size per VM below {RSS_BEFORE_MB:g} MB: RSS {memory['Rss']:.1f} MiB, PSS {memory['Pss']:.1f} MiB, private {memory['Anonymous']:.1f} MiB.",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "python_build_run.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
