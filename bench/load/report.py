"""Markdown reports and PNG charts for a load run (bench/results/load.md, scaling.md)."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402

from goals import ADDED_P50_MS, LITELLM_RPS_RATIO  # noqa: E402  (bench/goals.py)

from . import wrk  # noqa: E402
from .results import Measurement, Run, added  # noqa: E402
from .scenarios import (BODY_KIB, BYTES_PER_CHUNK, CHUNK_COUNTS, CHUNK_GAP_MS, CONNECTIONS,  # noqa: E402
                        PLUGIN_SETS, REDACTOR_FUEL, chat_body)

if TYPE_CHECKING:
    from .run_load import Settings

MAIN_ORDER = ("direct", "routeiq-0", "routeiq-1", "routeiq-3", "routeiq-10", "litellm-proxy")
P50_GOAL_MS = ADDED_P50_MS
RPS_GOAL_X = LITELLM_RPS_RATIO
COLORS: Mapping[str, str] = MappingProxyType({"p50": "#3b6ea8", "p99": "#d08a2c", "json": "#3b6ea8", "stream": "#5aa469",
                                             "direct": "#888888", "routeiq-3": "#3b6ea8"})


def _v(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> list[str]:
    from machine import cpu_model  # bench/machine.py

    cpu = cpu_model()
    try:
        import uvloop  # noqa: F401

        loop = "uvloop " + _v("uvloop")
    except ImportError:
        loop = "asyncio"
    http = "httptools" if _v("httptools") != "not installed" else "h11 " + _v("h11")
    mem = ""
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores{mem}; kernel {platform.system()} {platform.release()}",
        f"Python {platform.python_version()}; wasmtime-py {_v('wasmtime')}; routeiq {_v('routeiq')}; litellm {_v('litellm')}",
        f"uvicorn {_v('uvicorn')} ({loop}, HTTP parser {http}); starlette {_v('starlette')}; httpx {_v('httpx')}; {wrk.wrk_version()}",
    ]


def git_rev() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               cwd=Path(__file__).parent).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def ms(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def signed(x: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.{digits}f}"


def _flag(*ms_: Measurement | None) -> bool:
    return any(m is None or m.flagged for m in ms_)


# ---------------------------------------------------------------------------------- goals

def goal_lines(run: Run) -> list[str]:
    lines = []
    for stream, label in ((False, "non-streaming"), (True, "streaming")):
        r3, d = run.find("routeiq-3", "main", stream, 1), run.find("direct", "main", stream, 1)
        what = f"RouteIQ with 3 plugins adds at most {P50_GOAL_MS:g} ms p50 over direct ({label}, 1 connection)"
        if _flag(r3, d):
            lines.append(f"- {what}: **not evaluated** (a phase is missing or had errors)")
            continue
        gap = added(r3, d, "p50_ms")
        verdict = "**met**" if gap <= P50_GOAL_MS else f"**NOT met** (over by {gap - P50_GOAL_MS:.2f} ms)"
        lines.append(f"- {what}: {verdict}: added {gap:.2f} ms p50 ({d.wrk.p50_ms:.2f} -> {r3.wrk.p50_ms:.2f} ms), "  # type: ignore[union-attr]
                     f"added p99 {added(r3, d, 'p99_ms'):.2f} ms.")
    for stream, label in ((False, "non-streaming"), (True, "streaming")):
        r3, ll = run.find("routeiq-3", "main", stream, 32), run.find("litellm-proxy", "main", stream, 32)
        what = f"RouteIQ with 3 plugins serves at least {RPS_GOAL_X:g}x the LiteLLM proxy's RPS ({label}, 32 connections)"
        if _flag(r3, ll):
            lines.append(f"- {what}: **not evaluated** (a phase is missing or had errors)")
            continue
        ratio = r3.wrk.rps / ll.wrk.rps if ll.wrk.rps else math.inf  # type: ignore[union-attr]
        verdict = "**met**" if ratio >= RPS_GOAL_X else f"**NOT met** (short by {RPS_GOAL_X * ll.wrk.rps - r3.wrk.rps:.0f} RPS)"  # type: ignore[union-attr]
        lines.append(f"- {what}: {verdict}: {r3.wrk.rps:.0f} vs {ll.wrk.rps:.0f} RPS = {ratio:.2f}x.")  # type: ignore[union-attr]
    return lines


# ---------------------------------------------------------------------------------- tables

def scenario_table(run: Run, stream: bool) -> list[str]:
    out = ["| Scenario | p50 @1 (ms) | p99 @1 (ms) | added p50 (ms) | added p99 (ms) | RPS @32 | p50 @32 (ms) | p99 @32 (ms) | server CPU/req @32 (ms) | requests (@1 / @32) | errors (@1 / @32) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    d1 = run.find("direct", "main", stream, 1)
    for name in MAIN_ORDER:
        one, many = run.find(name, "main", stream, 1), run.find(name, "main", stream, 32)
        if one is None or many is None:
            continue
        base = "—" if name == "direct" else None
        out.append(f"| {name} | {ms(one.wrk.p50_ms)} | {ms(one.wrk.p99_ms)} | {base or signed(added(one, d1, 'p50_ms'))} | "
                   f"{base or signed(added(one, d1, 'p99_ms'))} | {many.wrk.rps:.0f} | {ms(many.wrk.p50_ms)} | {ms(many.wrk.p99_ms)} | {ms(many.server_cpu_ms, 3)} | "
                   f"{one.wrk.requests} / {many.wrk.requests} | {one.error_text()} / {many.error_text()} |")
    return out


def where_time_goes(run: Run) -> list[str]:
    out = ["| Scenario | mode | added p50 over direct (ms) | gateway's own time per request, mean (ms) | in plugin callbacks, mean (ms) | "
           "plugin callbacks per request | response-body reads per request | gateway CPU per request (ms) | upstream CPU per request (ms) |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for stream in (False, True):
        d = run.find("direct", "main", stream, 1)
        if d is not None:
            out.append(f"| direct | {'stream' if stream else 'json'} | — | — | — | — | — | — | {ms(d.upstream_cpu_ms, 3)} |")
        for name in MAIN_ORDER:
            m = run.find(name, "main", stream, 1)
            if m is None or name == "direct":
                continue
            c = m.cost
            out.append(f"| {name} | {'stream' if stream else 'json'} | {signed(added(m, d, 'p50_ms'))} | "
                       f"{ms(c.gateway_us / 1e3) if c else '—'} | {ms(c.plugin_us / 1e3, 3) if c else '—'} | "
                       f"{f'{c.callbacks:.0f}' if c else '—'} | {f'{c.response_body_calls:.1f}' if c and c.response_body_calls else '—'} | "
                       f"{ms(m.server_cpu_ms, 3)} | {ms(m.upstream_cpu_ms, 3)} |")
    return out


def plugin_table() -> list[str]:
    out = ["| Set | Plugin instance | Module | Capabilities | What it does per request |", "| --- | --- | --- | --- | --- |"]
    for n in (1, 3, 10):
        for p in PLUGIN_SETS[n]:
            if n == 10 and p in PLUGIN_SETS[3]:
                continue
            where = {1: "1, 3, 10", 3: "3, 10", 10: "10"}[n] if p not in PLUGIN_SETS[1] or n == 1 else ""
            if n == 3 and p in PLUGIN_SETS[1]:
                continue
            out.append(f"| {where} | `{p.name}` | `guest-examples/rust/build/{p.module}.wasm` | {', '.join(p.capabilities) or '—'} | {p.does} |")
    return out


# ---------------------------------------------------------------------------------- charts

def _bar_labels(ax: plt.Axes, bars: Sequence, fmt: str) -> None:  # type: ignore[type-arg]
    for b in bars:
        h = b.get_height()
        if not math.isnan(h):
            ax.annotate(fmt.format(h), (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")


def chart_latency(run: Run, path: Path) -> None:
    """p50 and p99 in separate rows: p99 is tens of ms where p50 is a few, one axis hides p50."""
    names = [n for n in MAIN_ORDER if n != "direct"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    for col, stream in enumerate((False, True)):
        d = run.find("direct", "main", stream, 1)
        for row, (attr, label) in enumerate((("p50_ms", "p50"), ("p99_ms", "p99"))):
            ax = axes[row][col]
            vals = [added(run.find(n, "main", stream, 1), d, attr) for n in names]
            bars = ax.bar(range(len(names)), vals, 0.6, color=COLORS[label])
            _bar_labels(ax, bars, "{:.2f}")
            if attr == "p50_ms":
                ax.axhline(P50_GOAL_MS, color="#b03030", ls="--", lw=1, label=f"goal: routeiq-3 adds ≤ {P50_GOAL_MS:g} ms p50")
                ax.legend(fontsize=8, loc="upper left")
            ax.set_xticks(range(len(names)), names)
            base = f"direct {label} {getattr(d.wrk, attr):.2f} ms" if d else "direct missing"
            ax.set_title(f"{'Streaming' if stream else 'Non-streaming'}: added {label} (1 connection; {base})", fontsize=10)
            ax.set_ylabel(f"{label} added over direct (ms)")
            ax.margins(y=0.15)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Latency added over calling the mock upstream directly", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chart_throughput(run: Run, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(11, 4.8))
    x = range(len(MAIN_ORDER))
    for i, stream in enumerate((False, True)):
        vals = [(m.wrk.rps if (m := run.find(n, "main", stream, 32)) else math.nan) for n in MAIN_ORDER]
        bars = ax.bar([xi + (i - 0.5) * 0.38 for xi in x], vals, 0.38, label="streaming" if stream else "non-streaming",
                      color=COLORS["stream" if stream else "json"])
        _bar_labels(ax, bars, "{:.0f}")
    ll = run.find("litellm-proxy", "main", False, 32)
    if ll is not None:
        ax.axhline(RPS_GOAL_X * ll.wrk.rps, color="#b03030", ls="--", lw=1, label=f"goal: {RPS_GOAL_X:g}x LiteLLM proxy (non-streaming)")
    ax.set_xticks(list(x), MAIN_ORDER)
    ax.set_yscale("log")  # direct is an order of magnitude above the rest
    ax.set_ylabel("requests per second (log scale)")
    ax.set_title("Throughput at 32 connections (1 worker per server; wrk, upstream and server share 2 cores)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _line(ax: plt.Axes, xs: Sequence[float], ys: Sequence[float], label: str, color: str, style: str = "-o") -> None:
    ax.plot(xs, ys, style, label=label, color=color, ms=5)
    for x, y in zip(xs, ys):
        if not math.isnan(y):
            ax.annotate(f"{y:.2f}" if abs(y) < 100 else f"{y:.0f}", (x, y), fontsize=7, xytext=(3, 4), textcoords="offset points")


def chart_plugins(run: Run, path: Path) -> None:
    ns = [0, 1, 3, 10]
    fig, (a, c, b) = plt.subplots(1, 3, figsize=(16, 4.6))
    for stream, color in ((False, COLORS["json"]), (True, COLORS["stream"])):
        d = run.find("direct", "main", stream, 1)
        mode = "streaming" if stream else "non-streaming"
        # p50 only: a single p99 outlier would flatten the curve (p99 is in the table)
        _line(a, ns, [added(run.find(f"routeiq-{n}", "main", stream, 1), d, "p50_ms") for n in ns], f"added p50, {mode}", color)
        _line(a, ns, [(m.cost.plugin_us / 1e3 if (m := run.find(f"routeiq-{n}", "main", stream, 1)) and m.cost else math.nan) for n in ns],
              f"of which in plugin callbacks, {mode}", color, "--s")
        _line(c, ns, [(m.server_cpu_ms if (m := run.find(f"routeiq-{n}", "main", stream, 32)) else math.nan) for n in ns], f"gateway, {mode}", color)
        _line(b, ns, [(m.wrk.rps if (m := run.find(f"routeiq-{n}", "main", stream, 32)) else math.nan) for n in ns], f"RouteIQ, {mode}", color)
    a.set(xlabel="Wasm plugins", ylabel="ms added over direct, p50 (1 connection)", title="Latency cost vs plugins")
    c.set(xlabel="Wasm plugins", ylabel="gateway CPU ms per request (32 connections)", title="CPU cost vs plugins")
    b.set(xlabel="Wasm plugins", ylabel="requests per second (32 connections)", title="Throughput vs plugins")
    c.set_ylim(bottom=0)
    b.set_ylim(bottom=0)
    for ax in (a, c, b):
        ax.set_xticks(ns)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chart_body(run: Run, path: Path, kib: Sequence[int]) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
    d = [run.find("direct", "body", False, 1, k * 1024) for k in kib]
    r = [run.find("routeiq-3", "body", False, 1, k * 1024) for k in kib]
    _line(a, kib, [m.wrk.p50_ms if m else math.nan for m in d], "direct p50", COLORS["direct"])
    _line(a, kib, [m.wrk.p50_ms if m else math.nan for m in r], "routeiq-3 p50", COLORS["routeiq-3"])
    _line(a, kib, [m.wrk.p99_ms if m else math.nan for m in r], "routeiq-3 p99", COLORS["p99"], "--s")
    a.set_yscale("log")  # p99 and direct's sub-ms p50 on one axis
    _line(b, kib, [added(x, y, "p50_ms") for x, y in zip(r, d)], "added p50", COLORS["routeiq-3"])
    _line(b, kib, [(x.cost.plugin_us / 1e3 if x and x.cost else math.nan) for x in r], "time in plugin callbacks", COLORS["stream"], "--s")
    _line(b, kib, [x.server_cpu_ms if x else math.nan for x in r], "gateway CPU per request", COLORS["p99"], ":^")
    a.set(ylabel="ms (1 connection, log scale)", title="Latency vs request body size (non-streaming)")
    b.set(ylabel="ms per request", title="RouteIQ (3 plugins) cost vs body size")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(kib), [f"{k} KiB" for k in kib])
        ax.set_xlabel("request body")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chart_chunks(run: Run, path: Path, counts: Sequence[int]) -> None:
    fig, (a, c, b) = plt.subplots(1, 3, figsize=(16, 4.6))
    d1 = [run.find("direct", "chunks", True, 1, chunks=n) for n in counts]
    r1 = [run.find("routeiq-3", "chunks", True, 1, chunks=n) for n in counts]
    d32 = [run.find("direct", "chunks", True, 32, chunks=n) for n in counts]
    r32 = [run.find("routeiq-3", "chunks", True, 32, chunks=n) for n in counts]
    _line(a, counts, [added(x, y, "p50_ms") for x, y in zip(r1, d1)], "added p50", COLORS["p50"])
    _line(a, counts, [added(x, y, "p99_ms") for x, y in zip(r1, d1)], "added p99", COLORS["p99"], "--s")
    _line(c, counts, [m.server_cpu_ms if m else math.nan for m in r1], "gateway, 1 connection", COLORS["routeiq-3"])
    _line(c, counts, [m.server_cpu_ms if m else math.nan for m in r32], "gateway, 32 connections", COLORS["stream"], "--s")
    _line(b, counts, [m.wrk.rps if m else math.nan for m in d32], "direct", COLORS["direct"])
    _line(b, counts, [m.wrk.rps if m else math.nan for m in r32], "routeiq-3", COLORS["routeiq-3"])
    a.set(ylabel="ms added to the whole response (1 connection)", title="Added latency vs chunks (paced 1 ms apart)")
    c.set(ylabel="gateway CPU ms per streamed response", title="RouteIQ CPU cost vs chunks")
    b.set(ylabel="responses per second (32 connections)", title="Streaming throughput vs chunks")
    _finish_log2(fig, (a, c, b), counts, "SSE content chunks per response", b, path)


def _finish_log2(fig: Any, axes: Sequence[Any], ticks: Sequence[int], xlabel: str, log_y: Any, path: Path) -> None:
    """Log2 x axis labelled with the measured points; `log_y` gets a log y axis; saved."""
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ticks), [str(t) for t in ticks])
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    log_y.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chart_concurrency(run: Run, path: Path, conns: Sequence[int]) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
    for name in ("direct", "routeiq-3"):
        ms_ = [run.find(name, "concurrency", False, c) for c in conns]
        _line(a, conns, [m.wrk.rps if m else math.nan for m in ms_], name, COLORS[name])
        _line(b, conns, [m.wrk.p50_ms if m else math.nan for m in ms_], f"{name} p50", COLORS[name])
        if name == "routeiq-3":
            _line(b, conns, [m.wrk.p99_ms if m else math.nan for m in ms_], f"{name} p99", COLORS["p99"], "--s")
    a.set_yscale("log")  # direct is ~20x RouteIQ
    a.set(ylabel="requests per second (log scale)", title="Throughput vs connections (non-streaming)")
    b.set(ylabel="ms", title="Latency vs connections (non-streaming)")
    _finish_log2(fig, (a, b), conns, "concurrent connections", b, path)


# ---------------------------------------------------------------------------------- documents

def _header(title: str, intro: str, settings: "Settings", command: str, run: Run, quick: bool) -> list[str]:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "", intro, ""]
    lines += [f"- {m}" for m in machine()]
    lines += [
        f"- Date: {stamp}; git {git_rev()}",
        f"- Command: `.venv/bin/{command}` (whole run: {run.wall_s:.0f} s)"
        + (" — **--quick run: 1 s phases, for checking the harness, not for quoting**" if quick else ""),
        f"- Phases: {settings.latency_s:g} s at 1 connection (latency), {settings.throughput_s:g} s at 32 connections (throughput), "
        f"{settings.curve_s:g} s per scaling-curve point; "
        + (f"each phase preceded by a {settings.warmup_s:g} s warm-up of the same shape; " if settings.warmup_s else "no per-phase warm-up; ")
        + f"each server warmed up {settings.server_warmup_s:g} s per mode at 32 connections; before each phase the harness waits "
        "until the previous phase's requests have drained. wrk: 1 thread, `--timeout 10s`.",
        "- **2 cores** shared by wrk, the mock upstream and the server under test (all on loopback, 1 worker each), "
        "so throughput is CPU-bound and other load on the machine shows up as noise.",
        "",
    ]
    return lines


def load_md(run: Run, settings: "Settings", command: str, quick: bool) -> str:
    small = len(chat_body(False))
    intro = (
        "wrk -> server under test -> mock OpenAI upstream, `POST /v1/chat/completions` with a "
        f"{small}-byte chat request (system + user message, `max_tokens`, `temperature`; {len(chat_body(True))} bytes with "
        "`\"stream\": true`). The mock upstream (bench/load/mock_upstream.py, pure ASGI under uvicorn, responses precomputed) answers "
        "a 512-character reply, as one JSON body or as 32 SSE content chunks + a final chunk + `data: [DONE]`. "
        "`direct` is wrk against the upstream itself; the others add one hop. "
        "Before wrk, one request of each kind is checked through each server: status 200, the whole reply, every SSE event, "
        "and for RouteIQ each plugin's response header and its callbacks on `/metrics` (the redactor must mask a key planted in the prompt)."
    )
    lines = _header("End-to-end load: RouteIQ + Wasm plugins vs direct vs LiteLLM proxy", intro, settings, command, run, quick)
    lines += ["## Goals", ""] + goal_lines(run) + [""]
    if run.flagged:
        lines += ["## ⚠ Phases with errors", "",
                  "These phases had non-2xx responses or socket errors; their numbers are not clean:", ""]
        lines += [f"- {m.scenario} {m.curve} {'stream' if m.stream else 'json'} c={m.connections} body={m.body_bytes}: {m.error_text()}"
                  for m in run.flagged] + [""]
    for stream in (False, True):
        lines += [f"## {'Streaming' if stream else 'Non-streaming'}", ""] + scenario_table(run, stream) + [""]
    lines += ["\"added\" = this scenario's percentile minus direct's at 1 connection (the same upstream, so what the extra hop costs). "
              "server CPU/req = user+system CPU of the server's process group (from /proc) during the phase, minus what the idle "
              "server burns in the same time (measured for 1 s before the first phase), over the requests it served; for direct it is "
              "the upstream's. errors = wrk's non-2xx/3xx count plus socket errors plus plugin traps; anything but 0 is flagged in bold.", "",
              "![added latency](load_latency.png)", "", "![throughput](load_throughput.png)", ""]
    lines += ["## Where RouteIQ's added time goes (1 connection)", "",
              "From the gateway's own `/metrics`, differenced around each phase: its measured request time "
              "(`routeiq_request_seconds`, from the ASGI app entry to the last byte handed to uvicorn) and the time spent "
              "inside plugin callbacks (`routeiq_plugin_callback_seconds`, all plugins); and each process's CPU time "
              "(user+system from /proc, net of idle) over the requests served. Means include outliers, so they can exceed the p50; "
              "wall-clock times above the CPU time are waiting, mostly for a core (2 cores, 3 busy processes, plus other load). "
              "What is not in plugin callbacks is the gateway's Python path: uvicorn/Starlette, parsing the body into the "
              "LLM request, routing, the httpx client call to the upstream, relaying the answer.", ""]
    lines += where_time_goes(run) + [""]
    lines += ["## Plugin sets", "",
              "Rust guests from guest-examples/rust, built by `./dev setup`; a policy file grants each exactly its "
              "manifest's capabilities, pinned by sha256. Plugins run in this order on requests (reverse on responses). "
              f"Default sandbox limits except the redactor's fuel, raised to {REDACTOR_FUEL:,} per callback (the default "
              "20,000,000 runs out on a 256 KiB body; see scaling.md). Router and breakers at their defaults: wrk cuts the "
              "streams in flight at the end of every phase, which RouteIQ does not count against the deployment.", "",
              "- routeiq-0: none", "- routeiq-1: " + ", ".join(p.name for p in PLUGIN_SETS[1]),
              "- routeiq-3: " + ", ".join(p.name for p in PLUGIN_SETS[3]),
              "- routeiq-10: " + ", ".join(p.name for p in PLUGIN_SETS[10]), ""] + plugin_table() + [""]
    lines += ["## Commands", "", "Servers (`$TMP` is the run's temporary directory, ports are picked free at run time):", ""]
    lines += [f"- {name}: `{cmd}`" for name, cmd in run.commands.items()]
    examples = {}
    for m in run.measurements:
        examples.setdefault((m.curve, m.stream, m.connections == 1), m.command)
    lines += ["", "wrk (one example per kind of phase; the Lua script sets method POST, the JSON body read from a file, "
              "and `Content-Type: application/json`):", ""]
    lines += [f"- `{cmd}`" for cmd in dict.fromkeys(examples.values())][:6]
    lines += ["", "Generated configuration (repository paths shortened; the real files use absolute paths):", ""]
    for key in ("routeiq-3/routeiq.yaml", "routeiq-3/policy.yaml", "litellm-proxy/litellm.yaml"):
        if key in run.configs:
            lines += [f"`{key}`:", "", "```yaml", run.configs[key].rstrip(), "```", ""]
    lines += ["## LiteLLM proxy setup", "",
              "`litellm --config litellm.yaml --port P --num_workers 1 --telemetry False --log_config quiet.json` with "
              "`LITELLM_LOCAL_MODEL_COST_MAP=True` (otherwise it fetches the model cost map from GitHub at import), "
              "`LITELLM_LOG=ERROR`, no `DATABASE_URL`, no master key. The CLI has no switch for uvicorn's access log, "
              "so a uvicorn logging config (`--log_config`) sets `uvicorn.access` to WARNING. Ready when `GET /health/liveliness` answers. "
              "It started offline and answered both modes.", ""]
    lines += ["## Checks before load", ""]
    lines += [f"- {name}: " + "; ".join(notes) for name, notes in run.notes.items() if notes and not name.startswith("chunks")]
    return "\n".join(lines) + "\n"


def scaling_md(run: Run, settings: "Settings", command: str, quick: bool) -> str:
    intro = ("How RouteIQ's cost per request grows with the number of Wasm plugins, the request body, the chunks of a streamed "
             "response and concurrency. Same harness as load.md (bench/load/run_load.py); \"added\" is relative to wrk "
             "calling the mock upstream directly under the same conditions.")
    lines = _header("RouteIQ scaling curves", intro, settings, command, run, quick)

    lines += ["## Plugins (0 / 1 / 3 / 10)", "",
              "From the load.md scenarios. \"CPU/req\" is the gateway process's user+system CPU (from /proc) during the "
              "phase divided by the requests it served: the cost per request independent of how the 2 cores are shared.", "",
              "| Plugins | added p50 json (ms) | added p99 json (ms) | added p50 stream (ms) | in plugins json (ms) | "
              "callbacks/req json | CPU/req json @32 (ms) | CPU/req stream @32 (ms) | RPS json @32 | RPS stream @32 |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    dj, ds = run.find("direct", "main", False, 1), run.find("direct", "main", True, 1)
    for n in (0, 1, 3, 10):
        j, s_ = run.find(f"routeiq-{n}", "main", False, 1), run.find(f"routeiq-{n}", "main", True, 1)
        j32, s32 = run.find(f"routeiq-{n}", "main", False, 32), run.find(f"routeiq-{n}", "main", True, 32)
        if j is None or j32 is None or s_ is None or s32 is None:
            continue
        lines.append(f"| {n} | {signed(added(j, dj, 'p50_ms'))} | {signed(added(j, dj, 'p99_ms'))} | {signed(added(s_, ds, 'p50_ms'))} | "
                     f"{ms(j.cost.plugin_us / 1e3 if j.cost else math.nan, 3)} | {j.cost.callbacks if j.cost else math.nan:.0f} | "
                     f"{ms(j32.server_cpu_ms, 3)} | {ms(s32.server_cpu_ms, 3)} | {j32.wrk.rps:.0f} | {s32.wrk.rps:.0f} |")
    d32, ds32 = run.find("direct", "main", False, 32), run.find("direct", "main", True, 32)
    if d32 and ds32:
        lines.append(f"| direct (upstream alone) | — | — | — | — | — | {ms(d32.server_cpu_ms, 3)} | {ms(ds32.server_cpu_ms, 3)} | "
                     f"{d32.wrk.rps:.0f} | {ds32.wrk.rps:.0f} |")
    pts = [(n, m.server_cpu_ms) for n in (0, 10) if (m := run.find(f"routeiq-{n}", "main", False, 32))]
    if len(pts) == 2:
        lines += ["", f"Marginal CPU per plugin (0 -> 10 plugins, non-streaming): {(pts[1][1] - pts[0][1]) / 10 * 1e3:.0f} µs per request."]
    lines += ["", "![plugins](scaling_plugins.png)", ""]

    lines += ["## Request body size (3 plugins; the redactor buffers and scans the whole body)", "",
              "Non-streaming, 1 connection. The body is the same chat request with a long earlier user turn of plain "
              f"prose (nothing to redact). The redactor's fuel limit is raised to {REDACTOR_FUEL:,} for all runs: with the "
              "default 20,000,000 it runs out of fuel on the 256 KiB body, traps, is quarantined after 5 traps and, being "
              "fail-closed, every later request is answered 503.", "",
              "| Body | direct p50 (ms) | routeiq-3 p50 (ms) | added p50 (ms) | added p99 (ms) | in plugins (ms) | gateway's own time (ms) | gateway CPU/req (ms) | errors |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for k in BODY_KIB:
        d, r = run.find("direct", "body", False, 1, k * 1024), run.find("routeiq-3", "body", False, 1, k * 1024)
        if d is None or r is None:
            continue
        lines.append(f"| {k} KiB | {ms(d.wrk.p50_ms)} | {ms(r.wrk.p50_ms)} | {signed(added(r, d, 'p50_ms'))} | {signed(added(r, d, 'p99_ms'))} | "
                     f"{ms(r.cost.plugin_us / 1e3 if r.cost else math.nan, 3)} | {ms(r.cost.gateway_us / 1e3 if r.cost else math.nan)} | "
                     f"{ms(r.server_cpu_ms, 3)} | {d.error_text()} / {r.error_text()} |")
    pts = [(k, m) for k in (BODY_KIB[0], BODY_KIB[-1]) if (m := run.find("routeiq-3", "body", False, 1, k * 1024))]
    if len(pts) == 2 and pts[0][1].cost and pts[1][1].cost:
        (k0, m0), (k1, m1) = pts
        lines += ["", f"Marginal cost per KiB of body ({k0} -> {k1} KiB): {(m1.server_cpu_ms - m0.server_cpu_ms) / (k1 - k0) * 1e3:.1f} µs "
                  f"gateway CPU, of which {(m1.cost.plugin_us - m0.cost.plugin_us) / (k1 - k0):.1f} µs in plugin callbacks."]  # type: ignore[union-attr]
    lines += ["", "![body size](scaling_body.png)", ""]

    lines += ["## Chunks per streamed response (3 plugins; chunk_counter reads every chunk)", "",
              f"Each point runs its own upstream (`--chunks N --reply-bytes {BYTES_PER_CHUNK}*N --chunk-gap-ms {CHUNK_GAP_MS:g}`) and "
              f"gateway. The upstream paces events {CHUNK_GAP_MS:g} ms apart (asyncio's timer granularity; real models emit a token "
              "every 10-50 ms): sent back to back, 32-256 events land in the gateway's socket buffer together and are relayed in "
              "one or two reads, so the curve would measure bytes instead of chunks. \"reads/req\" is chunk_counter's "
              "`proxy_on_response_body` calls per response (N content events + final event + [DONE] + end of stream). "
              "Because of the pacing, a response takes at least N ms, so added latency shows only what the gateway cannot hide "
              "in the gaps; the CPU columns show the full per-chunk cost.", "",
              "| Chunks | direct p50 @1 (ms) | routeiq-3 p50 @1 (ms) | added p50 (ms) | added p99 (ms) | reads/req @1 | in plugins/req @1 (ms) | "
              "gateway CPU/req @1 (ms) | gateway CPU/req @32 (ms) | direct RPS @32 | routeiq-3 RPS @32 | errors (d@1 / r@1 / d@32 / r@32) |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    cpu_pts = []
    for c in CHUNK_COUNTS:
        d1, r1 = run.find("direct", "chunks", True, 1, chunks=c), run.find("routeiq-3", "chunks", True, 1, chunks=c)
        d32_, r32 = run.find("direct", "chunks", True, 32, chunks=c), run.find("routeiq-3", "chunks", True, 32, chunks=c)
        if d1 is None or r1 is None or d32_ is None or r32 is None:
            continue
        cpu_pts.append((c, r32.server_cpu_ms, d32_.server_cpu_ms))
        errs = " / ".join(m.error_text() for m in (d1, r1, d32_, r32))
        lines.append(f"| {c} | {ms(d1.wrk.p50_ms)} | {ms(r1.wrk.p50_ms)} | {signed(added(r1, d1, 'p50_ms'))} | "
                     f"{signed(added(r1, d1, 'p99_ms'))} | {r1.cost.response_body_calls if r1.cost else math.nan:.1f} | "
                     f"{ms(r1.cost.plugin_us / 1e3 if r1.cost else math.nan, 3)} | {ms(r1.server_cpu_ms, 3)} | {ms(r32.server_cpu_ms, 3)} | "
                     f"{d32_.wrk.rps:.0f} | {r32.wrk.rps:.0f} | {errs} |")
    if len(cpu_pts) >= 2 and not any(math.isnan(v) for p in cpu_pts for v in p[1:]):
        (c0, a0, u0), (c1, a1, u1) = cpu_pts[0], cpu_pts[-1]
        lines += ["", f"Marginal cost at 32 connections ({c0} -> {c1} chunks): {(a1 - a0) / (c1 - c0) * 1e3:.1f} µs of gateway CPU per "
                  f"extra chunk (the upstream alone: {(u1 - u0) / (c1 - c0) * 1e3:.1f} µs to produce one). At 1 connection every event "
                  "wakes an idle process, so CPU per chunk is higher there (and tick-sampled CPU accounting is coarse for such short bursts)."]
    lines += ["", "![chunks](scaling_chunks.png)", ""]

    lines += ["## Concurrent connections (3 plugins, non-streaming)", "",
              "Measured inside the direct and routeiq-3 scenarios of load.md (same processes), after their main phases.", "",
              "| Connections | direct RPS | routeiq-3 RPS | routeiq-3 / direct | direct p50 (ms) | routeiq-3 p50 (ms) | routeiq-3 p99 (ms) | gateway CPU/req (ms) | errors |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for c in CONNECTIONS:
        d, r = run.find("direct", "concurrency", False, c), run.find("routeiq-3", "concurrency", False, c)
        if d is None or r is None:
            continue
        lines.append(f"| {c} | {d.wrk.rps:.0f} | {r.wrk.rps:.0f} | {r.wrk.rps / d.wrk.rps if d.wrk.rps else math.nan:.2f} | "
                     f"{ms(d.wrk.p50_ms)} | {ms(r.wrk.p50_ms)} | {ms(r.wrk.p99_ms)} | {ms(r.server_cpu_ms, 3)} | {d.error_text()} / {r.error_text()} |")
    lines += ["", "![concurrency](scaling_concurrency.png)", ""]
    lines += ["## Checks before load (chunk curve servers)", ""]
    lines += [f"- {name}: " + "; ".join(notes) for name, notes in run.notes.items() if notes and name.startswith("chunks")]
    return "\n".join(lines) + "\n"


def write_reports(run: Run, settings: "Settings", out: Path, command: str, quick: bool, curves: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "load.md", out / "load_latency.png", out / "load_throughput.png", out / "load.json"]
    (out / "load.md").write_text(load_md(run, settings, command, quick))
    chart_latency(run, out / "load_latency.png")
    chart_throughput(run, out / "load_throughput.png")
    chart_plugins(run, out / "scaling_plugins.png")
    written.append(out / "scaling_plugins.png")
    if curves:
        (out / "scaling.md").write_text(scaling_md(run, settings, command, quick))
        chart_body(run, out / "scaling_body.png", BODY_KIB)
        chart_chunks(run, out / "scaling_chunks.png", CHUNK_COUNTS)
        chart_concurrency(run, out / "scaling_concurrency.png", CONNECTIONS)
        written += [out / "scaling.md", out / "scaling_body.png", out / "scaling_chunks.png", out / "scaling_concurrency.png"]
    (out / "load.json").write_text(json.dumps({"quick": quick, "wall_s": run.wall_s, "notes": run.notes, "commands": run.commands,
                                               "measurements": [m.as_dict() for m in run.measurements]}, indent=1))
    return written
