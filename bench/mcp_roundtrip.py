"""A tools/call round trip through the gateway beside the same tool as a plain Python MCP
server, interleaved call by call so that other load on the machine hits every case alike.

Cases, each an open MCP session of the official client SDK (Streamable HTTP, loopback):
- the Rust unit_convert tool (guest-examples/rust/unit_convert) served by the gateway
  (`routeiq serve`: caller check, argument validation, Wasm sandbox with fuel, deadline
  and memory limits, output check, metrics);
- the same tool as a plain Python MCP server (bench/mcp_python_tool.py: the SDK's Server,
  arguments checked with jsonschema) - the baseline;
- that Python server fronted by the gateway (`mcp.servers`), for what the upstream path adds.

Writes bench/results/mcp.md. Target (issue #17): the gateway's Wasm tool <= 2x the
Python server's p50 latency.

Usage: .venv/bin/python bench/mcp_roundtrip.py [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import httpx
import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import RESULTS, machine  # noqa: E402  (bench/run.py)

TOOL = ROOT / "guest-examples" / "rust" / "build" / "unit_convert.wasm"
ARGS = {"value": 10, "from": "km", "to": "mi"}
TARGET_RATIO = 2.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(cmd: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:3]} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                httpx.get(ready_url, timeout=2, trust_env=False)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{ready_url} did not come up") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def gateway_config(work: Path, python_port: int) -> Path:
    config = {
        "server": {"host": "127.0.0.1", "log_level": "warn", "access_log": False},
        "runtime": {"cache_dir": str(work / "cache")},
        "admin": {"state_dir": str(work / "state")},
        "policy": {"tools": {"unit_convert": {"unpinned": True}}},
        "mcp": {
            "tools": [{"name": "unit_convert", "wasm": str(TOOL), "allow": {"anyone": True}}],
            "servers": [{"name": "py", "url": f"http://127.0.0.1:{python_port}/mcp/", "allow": {"anyone": True}}],
        },
    }
    path = work / "gateway.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@contextlib.asynccontextmanager
async def open_session(url: str) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                yield s


async def measure(cases: dict[str, tuple[str, str]], calls: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    async with contextlib.AsyncExitStack() as stack:
        sessions = {name: await stack.enter_async_context(open_session(url)) for name, (url, _) in cases.items()}
        names = list(cases)
        for name in names:  # warm up: compiled paths, pools, the upstream session
            for _ in range(100):
                await sessions[name].call_tool(cases[name][1], ARGS)
        for i in range(calls):
            order = names[i % len(names):] + names[: i % len(names)]  # rotate which goes first
            for name in order:
                began = time.perf_counter()
                result = await sessions[name].call_tool(cases[name][1], ARGS)
                elapsed = (time.perf_counter() - began) * 1e6
                assert not result.is_error and result.structured_content["unit"] == "mi", result
                times[name].append(elapsed)
    return times


def pct(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[int(q * (len(ordered) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per case")
    args = parser.parse_args(argv)
    from importlib.metadata import version

    if int(version("mcp").split(".")[0]) < 2:  # a .venv that got the LiteLLM proxy's mcp 1.x (before .venv-peers)
        print(f"mcp {version('mcp')} is installed, not requirements.lock's: reinstall it (.venv/bin/pip install --no-deps -r requirements.lock)", file=sys.stderr)
        return 2
    if not TOOL.exists():
        print(f"{TOOL} is missing: run ./dev setup (or routeiq build-guests)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        python_port, gateway_port = free_port(), free_port()
        with process([sys.executable, str(HERE / "mcp_python_tool.py"), str(python_port)], f"http://127.0.0.1:{python_port}/mcp/"):
            config = gateway_config(work, python_port)
            with process([sys.executable, "-m", "routeiq", "serve", "--config", str(config), "--port", str(gateway_port)], f"http://127.0.0.1:{gateway_port}/health"):
                gw = f"http://127.0.0.1:{gateway_port}/mcp"
                deadline = time.monotonic() + 60
                while "py_unit_convert" not in httpx.get(f"http://127.0.0.1:{gateway_port}/mcp/tools", trust_env=False).text:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the gateway did not list the Python server's tool")
                    time.sleep(0.1)
                cases = {
                    "Rust tool (Wasm) through the gateway": (gw, "unit_convert"),
                    "Same tool as a plain Python MCP server": (f"http://127.0.0.1:{python_port}/mcp/", "unit_convert"),
                    "Python server fronted by the gateway (mcp.servers)": (gw, "py_unit_convert"),
                }
                times = asyncio.run(measure(cases, args.calls))
    wasm, python, fronted = (times[n] for n in cases)
    ratio = statistics.median(wasm) / statistics.median(python)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# MCP: a tools/call round trip",
        "",
        "One `tools/call` of `unit_convert` (`{\"value\": 10, \"from\": \"km\", \"to\": \"mi\"}`) over Streamable HTTP on loopback, "
        "from an open session of the official `mcp` client SDK, timed from the call to its parsed result. The three cases are "
        "interleaved call by call (the first rotates), each server in its own process (`bench/mcp_roundtrip.py`). The gateway "
        "checks the caller, validates the arguments against the input schema, runs the Rust module in its sandbox (fuel, "
        "deadline, memory cap; on a worker thread so the loop keeps serving), checks the output schema and counts the call; "
        "the Python server (`bench/mcp_python_tool.py`) is the same SDK's `Server` with the same schemas, its arguments "
        "checked with jsonschema.",
        "",
        f"- Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end of the run (other work shares the cores)",
        f"- Date: {stamp}",
        f"- Command: `.venv/bin/python bench/mcp_roundtrip.py --calls {args.calls}` (or `./dev bench --only mcp`)",
        "",
        "| Case | p50 (µs) | p90 (µs) | p99 (µs) | calls |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, data in times.items():
        lines.append(f"| {name} | {statistics.median(data):.0f} | {pct(data, 0.9):.0f} | {pct(data, 0.99):.0f} | {len(data)} |")
    lines += [
        "",
        f"Gateway Wasm tool / plain Python server, p50: {ratio:.2f}x; the upstream path adds "
        f"{statistics.median(fronted) - statistics.median(python):+.0f} µs p50 over calling the Python server directly.",
        "",
        f"Target (issue #17): the gateway's Wasm tool <= {TARGET_RATIO:.0f}x the plain Python server's latency: {'met' if ratio <= TARGET_RATIO else 'NOT met'}.",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mcp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
