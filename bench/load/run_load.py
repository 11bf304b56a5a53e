"""End-to-end load benchmark: wrk -> {mock upstream | RouteIQ + N Wasm plugins | LiteLLM proxy}
-> mock upstream, all on loopback, one worker each. Writes bench/results/load.md,
scaling.md, load.json and PNG charts.

    .venv/bin/python bench/load/run_load.py [--quick] [--out DIR] [--logs DIR] [--no-curves]

`main(argv)` is the entry point for bench/run.py.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench.load` importable (namespace package)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: its shared modules (machine.py)
    __package__ = "bench.load"

from . import wrk  # noqa: E402
import httpx  # noqa: E402

from .gateway_metrics import cost, request_count, scrape  # noqa: E402
from .procs import Processes, StartupError, TerminateAsInterrupt  # noqa: E402
from .results import Measurement, Run  # noqa: E402
from .scenarios import (BODY_KIB, BYTES_PER_CHUNK, CHUNK_COUNTS, CHUNK_GAP_MS, CONNECTIONS, MAIN_CHUNKS, REPO,  # noqa: E402
                        THROUGHPUT_CONNECTIONS, Target, chat_body, start_target, verify)

# (scenario, kind, plugins). Every scenario gets its own upstream and server processes.
MAIN = (("direct", "direct", 0), ("routeiq-0", "routeiq", 0), ("routeiq-1", "routeiq", 1),
        ("routeiq-3", "routeiq", 3), ("routeiq-10", "routeiq", 10), ("litellm-proxy", "litellm", 0))
CURVE_SCENARIOS = ("direct", "routeiq-3")   # the body and concurrency curves run inside these


@dataclass(frozen=True)
class Settings:
    # Whole seconds: wrk's -d takes no fractions.
    latency_s: int        # 1-connection phases
    throughput_s: int     # 32-connection phases
    curve_s: int          # each point of a scaling curve
    warmup_s: int         # before every phase, same shape as the phase (0: none)
    server_warmup_s: int  # once per server, per mode, at 32 connections

    @staticmethod
    def of(quick: bool) -> "Settings":
        return Settings(1, 1, 1, 0, 1) if quick else Settings(5, 5, 4, 1, 2)


class Scripts:
    """wrk Lua scripts by (stream, body size), written once per run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._made: dict[tuple[bool, int | None], Path] = {}
        self._small = {stream: chat_body(stream) for stream in (False, True)}

    def body(self, stream: bool) -> bytes:
        return self._small[stream]

    def get(self, stream: bool, size: int | None = None) -> Path:
        key = (stream, size)
        if key not in self._made:
            name = f"post_{'stream' if stream else 'nonstream'}" + (f"_{size // 1024}k" if size else "")
            self._made[key] = wrk.post_script(self.directory, name, chat_body(stream, size))
        return self._made[key]


def _redact_cmd(cmd: list[str], tmp: Path) -> str:
    return shlex.join(cmd).replace(str(tmp), "$TMP").replace(str(REPO) + "/", "")


def settle(target: Target, scripts: Scripts, probe: bool = True) -> None:
    """Wait until the last wrk's in-flight requests are done: wrk stops sending at its deadline
    but the server still works off what it accepted, which would leak into the next phase
    (latency, CPU and RouteIQ's counters). The probe queues behind them; then the server's CPU
    (and RouteIQ's request counter) has to stand still for 0.2 s."""
    assert target.server is not None
    if probe:
        with httpx.Client(timeout=60, trust_env=False) as client:
            client.post(target.chat_url, content=scripts.body(False), headers={"content-type": "application/json"})
    counted = target.kind == "routeiq"
    last_cpu, last_count = target.server.cpu_seconds(), request_count(target.url) if counted else 0.0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.2)
        cpu, count = target.server.cpu_seconds(), request_count(target.url) if counted else 0.0
        if cpu - last_cpu < 0.02 and count == last_count:  # < 10% of a core: background timers only
            return
        last_cpu, last_count = cpu, count


def measure_idle(target: Target, seconds: float = 1.0) -> float:
    """CPU the idle server burns (event-loop timers, wasmtime's epoch ticker): subtracted from
    each phase so per-request CPU stays per request, which matters for long paced streams."""
    assert target.server is not None
    t0, c0 = time.monotonic(), target.server.cpu_seconds()
    time.sleep(seconds)
    target.idle_cores = max(0.0, (target.server.cpu_seconds() - c0) / (time.monotonic() - t0))
    return target.idle_cores


def prepare(run: Run, target: Target, scripts: Scripts, settings: Settings, chunks: int, reply_bytes: int) -> None:
    """Check, warm up, let it drain, measure its idle CPU: every server, before any phase."""
    notes = verify(target, chunks, reply_bytes)
    notes += warm_server(target, scripts, settings)
    settle(target, scripts)
    notes.append(f"idle CPU {measure_idle(target) * 100:.1f}% of a core")
    run.notes.setdefault(target.scenario, []).extend(notes)


def measure(run: Run, procs: Processes, target: Target, scripts: Scripts, settings: Settings, tmp: Path, *, curve: str,
            stream: bool, connections: int, duration_s: int, body_bytes: int | None = None, chunks: int = MAIN_CHUNKS,
            label: str | None = None) -> Measurement:
    assert target.server is not None and target.upstream is not None
    script = scripts.get(stream, body_bytes)
    if settings.warmup_s > 0:
        warm = wrk.run(target.chat_url, script, connections, settings.warmup_s)
        if warm.flagged:
            run.notes.setdefault(target.scenario, []).append(f"warm-up before {curve} c{connections} had errors: {warm.error_text()}")
    settle(target, scripts)
    before = scrape(target.url) if target.kind == "routeiq" else None
    t0, cpu0 = time.monotonic(), (target.server.cpu_seconds(), target.upstream.cpu_seconds())
    result = wrk.run(target.chat_url, script, connections, duration_s)
    procs.check_alive()
    settle(target, scripts, probe=False)  # the phase's own requests, to the last one
    cpu1 = (target.server.cpu_seconds() - target.idle_cores * (time.monotonic() - t0), target.upstream.cpu_seconds())
    phase_cost = cost(before, scrape(target.url)) if before is not None else None
    # RouteIQ counts what it served exactly; otherwise wrk's completed requests (the few
    # in flight at its deadline are served but not counted: < 2% at these rates).
    served = phase_cost.requests if phase_cost and phase_cost.requests else result.requests
    per_req = (lambda a, b: (b - a) / served * 1e3 if served else float("nan"))
    m = Measurement(label or target.scenario, curve, stream, connections, body_bytes or len(chat_body(stream)), chunks, result,
                    phase_cost, _redact_cmd(wrk.command(target.chat_url, script, connections, duration_s), tmp),
                    server_cpu_ms=per_req(cpu0[0], cpu1[0]), upstream_cpu_ms=per_req(cpu0[1], cpu1[1]))
    run.measurements.append(m)
    flag = f"  ERRORS: {m.error_text()}" if m.flagged else ""
    print(f"  {m.scenario:<14} {curve:<11} {'stream' if stream else 'json':<6} c={connections:<3} body={m.body_bytes:>6} "
          f"chunks={chunks:<3} rps={result.rps:8.1f} p50={result.p50_ms:7.3f}ms p99={result.p99_ms:7.3f}ms "
          f"cpu/req={m.server_cpu_ms:6.3f}ms{flag}", flush=True)
    return m


def warm_server(target: Target, scripts: Scripts, settings: Settings) -> list[str]:
    """First requests pay for imports, JIT-free but lazy paths, pools: keep them out of the numbers."""
    notes = []
    for stream in (False, True):
        res = wrk.run(target.chat_url, scripts.get(stream), THROUGHPUT_CONNECTIONS, settings.server_warmup_s)
        if res.flagged:
            notes.append(f"server warm-up ({'stream' if stream else 'json'}) had errors: {res.error_text()}")
    return notes


def run_main_scenario(run: Run, name: str, kind: str, n_plugins: int, settings: Settings, scripts: Scripts, tmp: Path,
                      log_dir: Path, curves: bool) -> None:
    workdir = tmp / name
    workdir.mkdir()
    print(f"[{name}] starting", flush=True)
    with Processes(log_dir, name) as procs:
        target = start_target(procs, kind, workdir, MAIN_CHUNKS, MAIN_CHUNKS * BYTES_PER_CHUNK, n_plugins)
        run.commands[name] = _redact_cmd(target.argv, tmp)
        for config in sorted(workdir.glob("*.yaml")):
            run.configs[f"{name}/{config.name}"] = config.read_text().replace(str(tmp), "$TMP").replace(str(REPO) + "/", "")
        prepare(run, target, scripts, settings, MAIN_CHUNKS, MAIN_CHUNKS * BYTES_PER_CHUNK)
        for stream in (False, True):
            measure(run, procs, target, scripts, settings, tmp, curve="main", stream=stream, connections=1, duration_s=settings.latency_s)
            measure(run, procs, target, scripts, settings, tmp, curve="main", stream=stream, connections=THROUGHPUT_CONNECTIONS,
                    duration_s=settings.throughput_s)
        if curves and name in CURVE_SCENARIOS:
            for kib in BODY_KIB:
                measure(run, procs, target, scripts, settings, tmp, curve="body", stream=False, connections=1,
                        duration_s=settings.curve_s, body_bytes=kib * 1024)
            for connections in CONNECTIONS:
                measure(run, procs, target, scripts, settings, tmp, curve="concurrency", stream=False, connections=connections,
                        duration_s=settings.curve_s)


def run_chunk_curve(run: Run, settings: Settings, scripts: Scripts, tmp: Path, log_dir: Path) -> None:
    """The chunk count is an upstream setting, so every point gets fresh upstream + gateway.
    The upstream paces events CHUNK_GAP_MS apart: sent back to back they reach the gateway in
    one or two reads, and the curve would measure bytes, not chunks."""
    for chunks in CHUNK_COUNTS:
        for name, kind, n_plugins in (("direct", "direct", 0), ("routeiq-3", "routeiq", 3)):
            label = f"chunks{chunks}-{name}"
            workdir = tmp / label
            workdir.mkdir()
            print(f"[{label}] starting", flush=True)
            with Processes(log_dir, label) as procs:
                target = start_target(procs, kind, workdir, chunks, chunks * BYTES_PER_CHUNK, n_plugins, CHUNK_GAP_MS)
                target.scenario = label
                run.commands.setdefault(f"chunk curve, {name}", _redact_cmd(target.argv, tmp))
                prepare(run, target, scripts, settings, chunks, chunks * BYTES_PER_CHUNK)
                for connections, duration in ((1, settings.curve_s), (THROUGHPUT_CONNECTIONS, settings.curve_s)):
                    measure(run, procs, target, scripts, settings, tmp, curve="chunks", stream=True, connections=connections,
                            duration_s=duration, chunks=chunks, label=name)


def estimate_s(settings: Settings, curves: bool) -> float:
    """Rough wall time, printed up front (startup ~3 s a server, ~8 s for LiteLLM)."""
    overhead = settings.warmup_s + 0.5
    main = sum(2 * (settings.latency_s + overhead) + 2 * (settings.throughput_s + overhead) + 2 * settings.server_warmup_s
               + (8 if kind == "litellm" else 3) for _, kind, _ in MAIN)
    if not curves:
        return main
    body_conc = len(CURVE_SCENARIOS) * (len(BODY_KIB) + len(CONNECTIONS)) * (settings.curve_s + overhead)
    chunks = len(CHUNK_COUNTS) * 2 * (2 * (settings.curve_s + overhead) + 2)
    return main + body_conc + chunks + 1.5 * (len(MAIN) + 2 * len(CHUNK_COUNTS))  # + idle CPU samples


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="RouteIQ end-to-end load benchmark (wrk).")
    parser.add_argument("--quick", action="store_true", help="1 s phases: for developing the harness, not for numbers")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="where the reports and charts go")
    parser.add_argument("--logs", type=Path, help="keep server logs here (default: a temporary directory)")
    parser.add_argument("--no-curves", action="store_true", help="only the scenario table, no scaling curves")
    args = parser.parse_args(argv)
    settings = Settings.of(args.quick)
    curves = not args.no_curves
    wrk.wrk_binary()  # fail now, not after the first server started
    from .report import write_reports  # matplotlib is slow to import; only needed at the end

    print(f"load benchmark: about {estimate_s(settings, curves) / 60:.1f} min", flush=True)
    started = time.monotonic()
    run = Run()
    with TerminateAsInterrupt(), tempfile.TemporaryDirectory(prefix="routeiq-load-") as tmp_name:
        tmp = Path(tmp_name)
        log_dir = args.logs.resolve() if args.logs else tmp / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        scripts = Scripts(tmp)
        try:
            for name, kind, n_plugins in MAIN:
                run_main_scenario(run, name, kind, n_plugins, settings, scripts, tmp, log_dir, curves)
            if curves:
                run_chunk_curve(run, settings, scripts, tmp, log_dir)
        except StartupError as exc:
            print(f"load benchmark: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("load benchmark: interrupted; every server was stopped", file=sys.stderr)
            return 130
    run.wall_s = time.monotonic() - started
    command = "python bench/load/run_load.py" + "".join(f" {a}" for a in argv)
    written = write_reports(run, settings, args.out, command, args.quick, curves)
    print(f"load benchmark: done in {run.wall_s:.0f} s; wrote {', '.join(str(p) for p in written)}")
    if run.flagged:
        print(f"load benchmark: {len(run.flagged)} phase(s) had errors (flagged in the report)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
