"""Slow event-loop callbacks under load. wrk drives the gateway (3 Wasm plugins) with
non-streaming and streaming chat completions at 32 connections, then edits the config file
so the watcher hot-swaps a multi-MB module (the Go SDK's) under load. Two runs, each a
fresh gateway:

- debug: asyncio debug mode with `loop.slow_callback_duration` at the threshold (5 ms
  unless told); every callback over it is counted, named by asyncio's log line and placed
  by a watchdog thread that samples the loop thread's stack once a callback runs past it.
  Debug mode costs CPU (every scheduled callback records where it was created), so it
  inflates callbacks: its rates are not the gateway's (load.md has those).
- lag: uvloop as `routeiq serve` runs it, no debug mode; a 1 ms heartbeat on the loop,
  a beat later than the threshold is one loop iteration that held the loop that long.

Writes bench/results/slow_callbacks.md.

    .venv/bin/python bench/load/slow_callbacks.py [--seconds 10] [--threshold-ms 5] [--mode debug|lag|both] [--out DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import logging
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench.load` importable (namespace package)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: its shared modules (machine.py)
    __package__ = "bench.load"

import httpx  # noqa: E402
import yaml  # noqa: E402

from . import wrk  # noqa: E402
from .procs import Processes, free_port, log_tail  # noqa: E402
from .scenarios import MAIN_CHUNKS, BYTES_PER_CHUNK, PLUGIN_SETS, REPO, THROUGHPUT_CONNECTIONS, chat_body, routeiq_config, start_upstream  # noqa: E402

GO_MODULE = REPO.parent / "shared" / "data" / "proxy-wasm-sdk" / "go-sdk-44c7d58" / "http_headers.wasm"
_EXECUTING = re.compile(r"Executing (?P<what>.*) took (?P<seconds>[0-9.]+) seconds", re.S)


# ---------------------------------------------------------------- in the gateway process
@dataclass
class SlowCallback:
    seconds: float
    what: str  # asyncio's description of the task or handle
    where: str  # the innermost project frames while it ran past the threshold
    at: float = field(default_factory=time.monotonic)  # when it ended (CLOCK_MONOTONIC: the driver's clock too)
    cpu: float | None = None  # the loop thread's CPU time meanwhile (lag mode): less than `seconds` = not running


class Recorder(logging.Handler):
    """Collects asyncio's 'Executing ... took N seconds' warnings. asyncio logs them right
    after the callback, with the loop's current handle still set: that finds the stack the
    watchdog sampled for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.WARNING)
        self.loop = loop
        self.samples: dict[int, str] = {}  # id(handle) -> where the loop was (the watchdog writes)
        self.slow: list[SlowCallback] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = _EXECUTING.match(record.getMessage())
        if match is None:
            return
        handle = getattr(self.loop, "_current_handle", None)
        where = self.samples.pop(id(handle), "") if handle is not None else ""
        self.slow.append(SlowCallback(float(match["seconds"]), _short(match["what"]), where))


def _short(what: str) -> str:
    """A task or handle description without addresses and creation tracebacks."""
    what = re.sub(r" at 0x[0-9a-f]+", "", what)
    what = re.sub(r" created at [^>]*", "", what)
    what = re.sub(r"name='Task-\d+' ", "", what)
    what = re.sub(r"<Future [^>]*>", "<Future>", what)
    return what[:300]


class Watchdog(threading.Thread):
    """Samples the loop thread's stack once a callback has run past the threshold (asyncio's
    debug mode keeps the running handle in loop._current_handle)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, loop_thread: int, threshold_s: float, recorder: Recorder) -> None:
        super().__init__(daemon=True, name="slow-callback-watchdog")
        self.loop, self.loop_thread, self.threshold_s, self.recorder = loop, loop_thread, threshold_s, recorder
        self.stopped = threading.Event()

    def run(self) -> None:
        seen: object = None
        since = 0.0
        sampled = False
        while not self.stopped.wait(self.threshold_s / 5):
            handle = getattr(self.loop, "_current_handle", None)
            now = time.monotonic()
            if handle is not seen:
                seen, since, sampled = handle, now, False
                continue
            if handle is not None and not sampled and now - since >= self.threshold_s:
                frame = sys._current_frames().get(self.loop_thread)
                self.recorder.samples[id(handle)] = _where(frame) if frame is not None else "?"
                sampled = True


class LagMonitor(threading.Thread):
    """Without debug mode (no overhead, and uvloop works too): a 1 ms heartbeat on the loop;
    a beat that comes more than the threshold late means one loop iteration held the loop
    that long. The thread samples the loop thread's stack while a beat is overdue."""

    PERIOD_S = 0.001

    def __init__(self, loop: asyncio.AbstractEventLoop, loop_thread: int, threshold_s: float) -> None:
        super().__init__(daemon=True, name="loop-lag-monitor")
        self.loop, self.loop_thread, self.threshold_s = loop, loop_thread, threshold_s
        self.last_beat = time.monotonic()
        self.last_cpu = time.thread_time()
        self.sampled: dict[float, str] = {}  # last_beat -> where the loop was while it was overdue
        self.stalls: list[SlowCallback] = []
        self.stopped = threading.Event()

    def beat(self) -> None:
        # The loop thread's own CPU time tells a loop held by our code (CPU ~ wall) from a
        # loop thread that was not running (descheduled on a busy machine, waiting for the GIL).
        now, cpu = time.monotonic(), time.thread_time()
        late = now - self.last_beat - self.PERIOD_S
        if late > self.threshold_s:
            self.stalls.append(SlowCallback(late, "loop iteration", self.sampled.pop(self.last_beat, ""), cpu=cpu - self.last_cpu))
        self.last_beat, self.last_cpu = now, cpu
        self.loop.call_later(self.PERIOD_S, self.beat)

    def run(self) -> None:
        while not self.stopped.wait(self.threshold_s / 2):  # each wake-up takes the GIL: not too often
            beat = self.last_beat
            if time.monotonic() - beat > self.threshold_s and beat not in self.sampled:
                frame = sys._current_frames().get(self.loop_thread)
                self.sampled[beat] = _where(frame) if frame is not None else "?"


class GcPauses:
    """Cyclic GC collections that took longer than the threshold (gc.callbacks): a
    collection holds the GIL, so the watchdog cannot sample the loop meanwhile."""

    def __init__(self, threshold_s: float) -> None:
        self.threshold_s = threshold_s
        self._started = 0.0
        self.pauses: list[dict[str, float]] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.monotonic()
            return
        took = time.monotonic() - self._started
        if took > self.threshold_s:
            self.pauses.append({"seconds": took, "generation": info["generation"], "at": time.monotonic()})


def _where(frame: Any) -> str:
    """The innermost frames of the project (host/, routeiq) plus the innermost frame
    overall (a library or C call it was in)."""
    # No source lines: loading files into linecache would make every callback debug mode
    # schedules afterwards stat them (its creation tracebacks check the cache).
    stack = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
    stack.reverse()
    ours = [f for f in stack if "/host/" in f.filename or "/routeiq/" in f.filename]
    def fmt(f: traceback.FrameSummary) -> str:
        name = f.filename.split("/host/", 1)[-1] if "/host/" in f.filename else Path(f.filename).name
        return f"{name}:{f.lineno} {f.name}"
    parts = [fmt(f) for f in ours[-3:]]
    if stack and (not ours or stack[-1] is not ours[-1]):
        parts.append("in " + fmt(stack[-1]))
    return " > ".join(parts) or "(no Python frame)"


def serve(config_path: Path, report: Path, threshold_ms: float, mode: str) -> int:
    """The gateway as `routeiq serve` runs it, on a loop watched in `mode`: "debug" (asyncio
    debug mode, slow_callback_duration) or "lag" (uvloop, no debug mode, heartbeat)."""
    import linecache

    import uvicorn

    from routeiq.config import load_config
    from routeiq.app import create_app, tune_gc_for_serving
    from routeiq.gateway.http_server import uvicorn_config
    from routeiq.log_format import configure_logging

    config = load_config(config_path)
    configure_logging(logging.WARNING, config.model.server.log_format)
    app = create_app(config)
    server = uvicorn.Server(uvicorn_config(app, config.model.server, host="127.0.0.1", port=config.model.server.port, log_level="warning"))
    threshold_s = threshold_ms / 1000.0
    loop_thread = threading.get_ident()
    if mode == "debug":
        loop = asyncio.new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = threshold_s
        recorder = Recorder(loop)
        asyncio_log = logging.getLogger("asyncio")
        asyncio_log.addHandler(recorder)
        asyncio_log.propagate = False  # counted here, not printed per callback
        monitor: Watchdog | LagMonitor = Watchdog(loop, loop_thread, threshold_s, recorder)

        def forget_source_lines() -> None:
            # Debug mode's creation tracebacks stat every file linecache holds; whatever
            # loaded source lines (a logged traceback) would make every callback slower.
            linecache.clearcache()
            loop.call_later(0.25, forget_source_lines)

        loop.call_soon(forget_source_lines)
        found = recorder.slow
    else:
        import uvloop

        loop = uvloop.new_event_loop()
        monitor = LagMonitor(loop, loop_thread, threshold_s)
        loop.call_soon(monitor.beat)
        found = monitor.stalls
    monitor.start()
    tune_gc_for_serving()  # as `routeiq serve` does
    gc_pauses = GcPauses(threshold_s)
    gc.callbacks.append(gc_pauses)
    # uvicorn re-raises the SIGTERM it shut down on: with this handler that returns here
    # (and the report is written) instead of killing the process.
    signal.signal(signal.SIGTERM, lambda *_: None)
    started = time.monotonic()
    try:
        loop.run_until_complete(server.serve())
    finally:
        monitor.stopped.set()
        loop.close()
        report.write_text(json.dumps({
            "mode": mode,
            "threshold_ms": threshold_ms,
            "served_s": time.monotonic() - started,
            "slow": [vars(s) for s in found],
            "gc": gc_pauses.pauses,
        }))
    return 0


# ----------------------------------------------------------------------- the driver
def _config(workdir: Path, port: int, upstream: str) -> Path:
    """The load bench's 3-plugin gateway, with the config watcher on (0.5 s), tagger
    unpinned (the reload swaps its module) and its own module cache (a real compile)."""
    path = routeiq_config(workdir, port, upstream, PLUGIN_SETS[3])
    config = yaml.safe_load(path.read_text())
    config["server"]["watch_config"] = True
    config["runtime"] = {"cache_dir": str(workdir / "cache")}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    policy_path = workdir / "policy.yaml"
    policy = yaml.safe_load(policy_path.read_text())
    tagger = policy["plugins"]["tagger"]
    tagger.pop("sha256", None)
    tagger["unpinned"] = True
    policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def _swap_module_in_file(path: Path, module: Path) -> None:
    config = yaml.safe_load(path.read_text())
    for plugin in config["plugins"]:
        if plugin["name"] == "tagger":
            plugin["wasm"] = str(module)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@dataclass
class Phase:
    name: str
    results: list[wrk.WrkResult]
    start: float = field(default_factory=time.monotonic)
    end: float = 0.0

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.results)

    def row(self, slow: list[dict[str, Any]], gc_pauses: list[dict[str, Any]], threshold_ms: float) -> str:
        seconds = sum(r.duration_s for r in self.results)
        errors = "; ".join(r.error_text() for r in self.results if r.flagged) or "0"
        p99 = max(r.p99_ms for r in self.results)
        mine = [s for s in slow if self.start <= s["at"] <= self.end]
        longest = max((s["seconds"] * 1e3 for s in mine), default=0)
        busy = [s for s in mine if s.get("cpu") is not None and s["cpu"] * 1e3 > threshold_ms]
        on_cpu = f" | {len(busy)} | {max((s['cpu'] * 1e3 for s in busy), default=0):.1f} ms" if any(s.get("cpu") is not None for s in slow) else ""
        pauses = [g["seconds"] * 1e3 for g in gc_pauses if self.start <= g["at"] <= self.end]
        return (f"| {self.name} | {self.requests} | {self.requests / seconds if seconds else 0:.0f} | {p99:.1f} ms | {errors} "
                f"| {len(mine)} | {longest:.1f} ms{on_cpu} | {len(pauses)} ({max(pauses, default=0):.0f} ms) |")


MODES = {
    "debug": "asyncio debug mode (asyncio's loop: its log names the task), `loop.slow_callback_duration` at the threshold; "
    "a watchdog thread samples where the loop is once a callback runs past it",
    "lag": "uvloop (what `routeiq serve` runs), no debug mode: a 1 ms heartbeat on the loop; a beat later than the "
    "threshold is one loop iteration that held the loop that long (stack sampled while it is overdue)",
}


def run(seconds: int, threshold_ms: float, mode: str, tmp: Path) -> tuple[dict[str, Any], list[Phase], list[str]]:
    workdir = tmp / mode
    workdir.mkdir()
    report = workdir / "slow.json"
    notes: list[str] = []
    with Processes(workdir, f"slow-{mode}") as procs:
        upstream = start_upstream(procs, MAIN_CHUNKS, MAIN_CHUNKS * BYTES_PER_CHUNK)
        port = free_port()
        config = _config(workdir, port, upstream.url)
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve", str(config), "--report", str(report),
                "--threshold-ms", str(threshold_ms), "--mode", mode]
        url = f"http://127.0.0.1:{port}"
        procs.start("routeiq", argv, url, "/health", timeout_s=90)
        chat = url + "/v1/chat/completions"
        scripts = {stream: wrk.post_script(workdir, f"post_{stream}", chat_body(stream)) for stream in (False, True)}
        wrk.run(chat, scripts[False], THROUGHPUT_CONNECTIONS, 2)  # warm-up: first requests pay for imports
        phases = []
        for stream in (False, True):
            phases.append(Phase("stream" if stream else "json", []))
            phases[-1].results.append(wrk.run(chat, scripts[stream], THROUGHPUT_CONNECTIONS, seconds))
            phases[-1].end = time.monotonic()
        # The file is edited under load; the load goes on (in `seconds` rounds) until the
        # watcher has applied the reload, so the whole compile happens under load.
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
            editor = threading.Timer(seconds / 4, _swap_module_in_file, (config, GO_MODULE))
            editor.start()
            reload = Phase("json + config reload (Go module, 4.7 MB)", [])
            deadline = time.monotonic() + 120
            while True:
                reload.results.append(wrk.run(chat, scripts[False], THROUGHPUT_CONNECTIONS, seconds))
                watch = client.get("/health").json()["config"]
                if watch["reloads"] or time.monotonic() > deadline:
                    break
            reload.end = time.monotonic()
            editor.join()
            phases.append(reload)
            tagger = next(p for p in client.get("/health").json()["plugins"] if p["name"] == "tagger")
        notes.append(f"the reload under load: config.reloads={watch['reloads']}, last_error={watch['last_error']!r}; tagger now "
                     f"sha256 {str(tagger.get('sha256', '?'))[:12]}, state {tagger.get('state')}")
        procs.stop_all()  # SIGTERM: the gateway writes its report on the way out
    if not report.exists():
        raise RuntimeError(f"the gateway wrote no report\n--- its log ---\n{log_tail(workdir / f'slow-{mode}.routeiq.log', 40)}")
    return json.loads(report.read_text()), phases, notes


def grouped(slow: list[dict[str, Any]]) -> list[tuple[str, str, int, float, float, float | None]]:
    """(where, what, count, longest ms, total ms, longest on-CPU ms), the most total first."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for s in slow:
        groups[(s["where"] or "(not sampled)", s["what"])].append(s)
    rows = []
    for (where, what), items in groups.items():
        ms = [i["seconds"] * 1e3 for i in items]
        cpu = [i["cpu"] * 1e3 for i in items if i.get("cpu") is not None]
        rows.append((where, what, len(ms), max(ms), sum(ms), max(cpu) if cpu else None))
    return sorted(rows, key=lambda r: -r[4])


def markdown(results: list[tuple[dict[str, Any], list[Phase], list[str]]], seconds: int, threshold_ms: float, command: str) -> str:
    from .report import git_rev, machine

    lines = [
        "# Slow event-loop callbacks under load",
        "",
        f"What held the gateway's event loop for more than {threshold_ms:g} ms while wrk drove the load bench's "
        f"3-plugin gateway (tagger, redactor, chunk_counter; mock upstream) at {THROUGHPUT_CONNECTIONS} connections: "
        f"{seconds} s of non-streaming, {seconds} s of streaming, then non-streaming while the config file is edited so the "
        "watcher hot-swaps tagger to the Go SDK's 4.7 MB http_headers.wasm (empty module cache: a real compile), until the "
        "reload is applied. Grouped by where the loop was (innermost project frames, then the innermost frame) when the "
        "threshold passed. Not a test: the numbers depend on the machine and what else it runs.",
        "",
        "Reading it: in debug mode each row is one callback (a task step, a transport read), but debug mode itself "
        "makes callbacks slower (compare its request rate with lag mode's), so a callback here is a few times longer "
        "than it is without it. In lag mode a row is one loop iteration, which runs every callback that was ready: at "
        f"{THROUGHPUT_CONNECTIONS} connections that is many requests' steps back to back, so an iteration over the "
        "threshold is not by itself one blocking call. The loop thread's CPU time during the iteration tells a loop "
        "busy with our code (CPU close to the wall time) from a loop thread that was not running at all (descheduled on "
        "a busy machine: wrk, the upstream and the compile threads share its cores; or waiting for the GIL).",
        "",
        f"Command: `{command}` (or `./dev bench --only slow_callbacks`); commit {git_rev()}.",
        "",
        "Machine: " + "; ".join(machine()),
        "",
    ]
    for report, phases, notes in results:
        slow = report["slow"]
        unit = "callbacks" if report["mode"] == "debug" else "loop iterations"
        lag = report["mode"] == "lag"
        cpu_head = f" of which the loop thread ran over {threshold_ms:g} ms | longest on CPU |" if lag else ""
        lines += [f"## {report['mode']}: {MODES[report['mode']]}", "",
                  f"| phase | requests | rps | p99 | errors | {unit} over {threshold_ms:g} ms | longest |{cpu_head} GC collections over {threshold_ms:g} ms (longest) |",
                  "| --- | ---: | ---: | ---: | --- | ---: | ---: |" + (" ---: | ---: |" if lag else "") + " ---: |"]
        lines += [phase.row(slow, report.get("gc", []), threshold_ms) for phase in phases]
        total = sum(p.requests for p in phases)
        lines += ["", f"**{len(slow)} {unit} over {threshold_ms:g} ms** in {report['served_s']:.0f} s of serving "
                  f"({total} requests under load); longest {max((s['seconds'] for s in slow), default=0) * 1e3:.1f} ms.", ""]
        lines += [f"- {n}" for n in notes]
        if slow:
            lines += ["", "| where the loop was | what ran | count | max | total | longest on CPU |", "| --- | --- | ---: | ---: | ---: | ---: |"]
            for where, what, count, worst, total_ms, cpu in grouped(slow)[:20]:
                lines.append(f"| `{where}` | `{what}` | {count} | {worst:.1f} ms | {total_ms:.0f} ms | {'-' if cpu is None else f'{cpu:.1f} ms'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each load phase")
    parser.add_argument("--threshold-ms", type=float, default=5.0)
    parser.add_argument("--mode", choices=("debug", "lag", "both"), default="both")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the gateway child
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        return serve(args.serve, args.report, args.threshold_ms, args.mode)
    wrk.wrk_binary()
    if not GO_MODULE.exists():
        print(f"slow callbacks: {GO_MODULE} is missing (the shared test data)", file=sys.stderr)
        return 2
    modes = ("debug", "lag") if args.mode == "both" else (args.mode,)
    with tempfile.TemporaryDirectory(prefix="routeiq-slow-") as tmp_name:
        results = [run(args.seconds, args.threshold_ms, mode, Path(tmp_name)) for mode in modes]
    command = "python bench/load/slow_callbacks.py" + "".join(f" {a}" for a in argv)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "slow_callbacks.md"
    out.write_text(markdown(results, args.seconds, args.threshold_ms, command))
    for report, _, _ in results:
        print(f"slow callbacks ({report['mode']}): {len(report['slow'])} over {args.threshold_ms:g} ms")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
