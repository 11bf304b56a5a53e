"""Gateway CPU per request, in-process: what the Python path around the plugin hooks costs.

Two measures, each for the load bench's plugin sets (0, 1, 3, 10 Rust plugins):

- gateway: the whole ASGI app (middleware, plugin chain, LLM path, the aiohttp call to
  the mock upstream, relaying the answer) driven directly with sequential
  non-streaming chat requests. The upstream (bench/load/mock_upstream.py) runs in its
  own process, so what is counted is the gateway's work only, minus uvicorn's HTTP
  parsing (the same for every plugin count).
- chain: ChainStream alone over one exchange (open, request headers, request body,
  response headers, one response body chunk, done/log/delete), no ASGI, no upstream.

CPU is this thread's (time.thread_time), so wasmtime's epoch ticker and other processes
are left out. Plugin sets run interleaved, round after round, and each figure is the
median over rounds (with the min-max range), so load from elsewhere on the machine hits
every set alike.

    .venv/bin/python bench/chain_cpu.py [--rounds 7] [--requests 2000] [--json out.json]
    .venv/bin/python bench/chain_cpu.py --compare REV ...   before (git REV) / after, interleaved
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parent))  # `bench.load` (namespace package)
    sys.path.insert(0, str(HERE))  # bench/'s shared modules

from bench.load.procs import Processes  # noqa: E402
from bench.load.scenarios import CHAT_PATH, MAIN_CHUNKS, BYTES_PER_CHUNK, PLUGIN_SETS, chat_body, routeiq_config, start_upstream  # noqa: E402

SETS = (0, 1, 3, 10)


@dataclass
class Series:
    """CPU µs per request of one measure, one value per round."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def describe(self) -> str:
        return f"{self.median:.1f} ({min(self.values):.1f}-{max(self.values):.1f})"


def _scope(body: bytes) -> dict[str, Any]:
    """What uvicorn hands the app for wrk's request (fresh each time: the app may keep it)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": CHAT_PATH,
        "raw_path": CHAT_PATH.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "state": {},
    }


class Driver:
    """Sends requests straight into one gateway app."""

    def __init__(self, app: Any, body: bytes) -> None:
        self.app = app
        self.body = body
        self.status = 0
        self.received = 0

    async def one(self) -> None:
        body = self.body
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)  # http.disconnect only when the client goes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                self.received += len(message.get("body", b""))

        await self.app(_scope(body), receive, send)
        if self.status != 200:
            raise RuntimeError(f"gateway answered {self.status}")

    async def rewarm(self, requests: int = 20) -> None:
        """A few unmeasured requests: after a pause (--compare waits its turn) the upstream
        may have closed the idle pooled connection, and one request finds out (a 502)."""
        for _ in range(requests):
            try:
                await self.one()
            except RuntimeError:
                pass

    async def cpu_us(self, requests: int) -> float:
        failed = 0
        t0 = time.thread_time()
        for _ in range(requests):
            try:
                await self.one()
            except RuntimeError:  # on a loaded machine a callback can overrun its deadline
                failed += 1
        elapsed = time.thread_time() - t0
        if failed:
            print(f"gateway: {failed} of {requests} requests failed (see the log above)", file=sys.stderr)
        return elapsed / requests * 1e6


def chain_exchange(gateway: Any, body: bytes) -> bool:
    """One exchange through the chain alone, as the filter drives it; False if a plugin
    failed it (on a loaded machine a callback can overrun its wall-clock deadline)."""
    from routeiq.dispatch.chain import ChainStream, Step, request_header_map
    from routeiq.hostcalls.llm_exchange import LlmExchange
    from routeiq.hostcalls.state import HeaderMap, HttpStream

    filt = gateway.filter
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"x-request-id", b"bench")]
    stream = HttpStream(request_headers=request_header_map("POST", CHAT_PATH, "127.0.0.1:8000", "http", headers, filt.request_rules), request_id="bench")
    stream.llm = LlmExchange.parse(body, filt.llm_models or frozenset())
    chain = ChainStream(filt.plugins, stream, None)
    ok = chain.request_headers(False).step is Step.CONTINUE
    if ok and chain.wants("proxy_on_request_body"):
        ok = chain.request_body(body, True).step is Step.CONTINUE
    if ok:
        stream.response_headers = HeaderMap([(b":status", b"200"), (b"content-type", b"application/json"), (b"content-length", b"600")], rules=filt.response_rules)
        ok = chain.response_headers(False).step is Step.CONTINUE
    if ok and chain.wants("proxy_on_response_body"):
        ok = chain.response_body(b'{"id":"x","choices":[]}', True).step is Step.CONTINUE
    chain.finish()
    return ok


def chain_cpu_us(gateway: Any, body: bytes, exchanges: int) -> float:
    failed = 0
    t0 = time.thread_time()
    for _ in range(exchanges):
        failed += not chain_exchange(gateway, body)
    elapsed = time.thread_time() - t0
    if failed:
        print(f"chain alone: {failed} of {exchanges} exchanges failed (see the log above)", file=sys.stderr)
    return elapsed / exchanges * 1e6


async def measure(args: argparse.Namespace) -> dict[str, dict[int, Series]]:
    from routeiq.config import load_config
    try:
        from routeiq.app import create_app
    except ImportError:  # --compare against a revision before the composition root moved
        from routeiq.gateway.app import create_app  # type: ignore[no-redef]

    body = chat_body(False)
    results: dict[str, dict[int, Series]] = {"gateway": {n: Series() for n in args.sets}, "chain": {n: Series() for n in args.sets if n}}
    with tempfile.TemporaryDirectory(prefix="routeiq-chain-cpu-") as tmp, Processes(Path(tmp), "chain-cpu") as procs:
        upstream = start_upstream(procs, MAIN_CHUNKS, MAIN_CHUNKS * BYTES_PER_CHUNK)
        apps: dict[int, Any] = {}
        for n in args.sets:
            workdir = Path(tmp) / f"routeiq-{n}"
            workdir.mkdir()
            app = create_app(load_config(routeiq_config(workdir, 8000, upstream.url, PLUGIN_SETS[n])))
            await app.state.gateway.start_background()
            apps[n] = app
        drivers = {n: Driver(app, body) for n, app in apps.items()}
        for driver in drivers.values():  # warm-up: connections, caches, first VM use
            await driver.cpu_us(200)
        for n in results["chain"]:
            chain_cpu_us(apps[n].state.gateway, body, 200)
        gc.collect()
        gc.freeze()  # as a serving process does (tune_gc_for_serving)
        gc.set_threshold(10_000, 20, 20)
        try:
            for r in range(args.rounds):
                if args.worker and not sys.stdin.readline():  # --compare: wait for our turn
                    break
                for n in args.sets if args.only != "chain" else ():
                    await drivers[n].rewarm()
                    results["gateway"][n].values.append(await drivers[n].cpu_us(args.requests))
                for n in results["chain"] if args.only != "gateway" else ():
                    results["chain"][n].values.append(chain_cpu_us(apps[n].state.gateway, body, args.requests))
                if args.worker:
                    print(json.dumps({kind: {n: s.values[-1] for n, s in series.items() if s.values} for kind, series in results.items()}), flush=True)
                else:
                    print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for app in apps.values():
                await app.state.gateway.aclose()
    return results


def per_plugin(results: dict[str, dict[int, Series]]) -> dict[str, Series]:
    """(cost with n plugins - cost with none) / n, per round."""
    gateway = results["gateway"]
    out: dict[str, Series] = {}
    if 0 not in gateway or not gateway[0].values:
        return out
    for n in gateway:
        if n:
            out[f"per extra plugin ({n} plugins)"] = Series([(a - b) / n for a, b in zip(gateway[n].values, gateway[0].values)])
    return out


def report(results: dict[str, dict[int, Series]]) -> list[str]:
    lines = ["| Measure | CPU µs per request, median (min-max over rounds) |", "| --- | ---: |"]
    rows = [(f"gateway, {n} plugins", s) for n, s in results["gateway"].items()]
    rows += list(per_plugin(results).items())
    rows += [(f"chain alone, {n} plugins", s) for n, s in results["chain"].items()]
    lines += [f"| {name} | {s.describe()} |" for name, s in rows if s.values]
    return lines


def before_tree(rev: str, into: Path) -> Path:
    """The routeiq package as of git `rev`, importable from `into` (PYTHONPATH) ahead of the
    editable install; the compiled _fastcall extension is today's (its C source rarely changes)."""
    repo = HERE.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "host", "abi", "strategies"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    package = into / "routeiq"
    (into / "host").rename(package)
    (into / "abi").rename(package / "abi")
    (into / "strategies").rename(package / "strategies")
    for built in (repo / "host" / "runtime").glob("_fastcall*.so"):
        shutil.copy(built, package / "runtime" / built.name)
    return into


def compare(args: argparse.Namespace, passthrough: list[str]) -> dict[str, dict[str, dict[int, Series]]]:
    """Before and after in two worker processes taking turns round by round (the order
    swapped every round), so both see the same load from the rest of the machine."""
    with tempfile.TemporaryDirectory(prefix="routeiq-before-") as tmp:
        env_before = {**os.environ, "PYTHONPATH": str(before_tree(args.compare, Path(tmp)))}
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", *passthrough]
        workers = {
            "before": subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env_before),
            "after": subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True),
        }
        out = {name: {"gateway": {n: Series() for n in args.sets}, "chain": {n: Series() for n in args.sets if n}} for name in workers}
        try:
            for r in range(args.rounds):
                for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    proc = workers[name]
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"the {name} worker exited")
                    for kind, values in json.loads(line).items():
                        for n, value in values.items():
                            out[name][kind][int(n)].values.append(value)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for proc in workers.values():
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=60)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000, help="requests per set per round")
    parser.add_argument("--sets", default=",".join(map(str, SETS)), help="plugin counts, e.g. 0,10")
    parser.add_argument("--only", choices=("gateway", "chain"), help="one of the two measures")
    parser.add_argument("--json", type=Path, help="also write the raw per-round figures here")
    parser.add_argument("--md", type=Path, help="also write the table as a Markdown report here")
    parser.add_argument("--compare", metavar="REV", help="measure git REV (before) and this tree (after) side by side")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.sets = tuple(int(s) for s in args.sets.split(","))
    if args.compare:
        skip = {"--compare", "--json"}
        passthrough = [a for i, a in enumerate(argv) if a not in skip and (i == 0 or argv[i - 1] not in skip) and not a.startswith(("--compare=", "--json="))]
        both = compare(args, passthrough)
        for name, results in both.items():
            print(f"{name} ({args.compare if name == 'before' else 'this tree'}):")
            print("\n".join(report(results)))
        if args.json:
            args.json.write_text(json.dumps({name: {kind: {str(n): s.values for n, s in series.items()} for kind, series in r.items()} for name, r in both.items()}, indent=1) + "\n")
        return 0
    try:
        import uvloop

        runner = uvloop.run  # what uvicorn serves with
    except ImportError:
        runner = asyncio.run
    results = runner(measure(args))
    print("\n".join(report(results)))
    if args.md:
        from machine import cpu_model  # bench/machine.py

        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        intro = __doc__.split("\n\n")[0].split("\n", 1)[0]
        head = [f"# {intro}", "", *__doc__.split("\n\n")[1:4], "",
                f"- Machine: {cpu_model()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}", f"- Date: {stamp}",
                f"- Command: `.venv/bin/python bench/chain_cpu.py --rounds {args.rounds} --requests {args.requests}`", ""]
        tail = ["", "Targets (issue #12 item 10): per extra plugin ≤ 25 µs, and ≤ 0.10 ms for a 0-plugin gateway (the load",
                "bench's server CPU per request); the before/after of the work on them, and where the time goes, is in",
                "before_after.md. \"chain alone\" grows linearly: the 10-plugin set's plugins do more than the tagger",
                "(LLM reads, shared KV, metrics), not the chain more per plugin."]
        args.md.write_text("\n".join(head + report(results) + tail) + "\n")
    if args.json:
        raw = {kind: {str(n): s.values for n, s in series.items()} for kind, series in results.items()}
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
