"""aiohttp or httpx for the gateway's outbound calls (issue #12 item 7): the client side
of one pass-through call, measured alone.

A loopback upstream (uvicorn + uvloop + httptools, its own process, so its CPU is not
counted) answers POST /v1/chat/completions with a small JSON completion, or with an SSE
stream of `--chunks` events. The client process (uvloop, as under `routeiq serve`) sends
`--n` requests per case and reports the client's CPU per request (process CPU time over
the run / n) and the per-request latency. The clients are configured as the gateway
configures them: one pool, no proxies from the environment, no redirects, a connect
timeout. Cases alternate between libraries for `--rounds` rounds; the table shows the
median round.

    .venv/bin/python bench/http_client.py [--n 2000] [--rounds 3] [--out bench/results/http_client.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello there"}]}).encode()
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}

UPSTREAM = r'''
import json, sys, uvicorn
chunks = int(sys.argv[2])
completion = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}).encode()
event = b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "word "}}]}).encode() + b"\n\n"
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    stream = False
    while True:
        message = await receive()
        stream = stream or b'"stream"' in message.get("body", b"")
        if not message.get("more_body"):
            break
    if not stream:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": completion})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for _ in range(chunks):
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", log_level="warning", access_log=False)
'''


class Aiohttp:
    name = "aiohttp"

    def __init__(self) -> None:
        connector = aiohttp.TCPConnector(limit=200, limit_per_host=0, ttl_dns_cache=60)
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False, skip_auto_headers=("User-Agent",))
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=None)

    async def complete(self, url: str) -> int:
        async with self.session.post(url, data=BODY, headers=HEADERS, timeout=self.timeout, allow_redirects=False) as response:
            return len(await response.read())

    async def stream(self, url: str) -> int:
        got = 0
        async with self.session.post(url, data=STREAM_BODY, headers=HEADERS, timeout=self.timeout, allow_redirects=False) as response:
            async for chunk in response.content.iter_any():
                got += len(chunk)
        return got

    async def aclose(self) -> None:
        await self.session.close()


class HttpxClient:
    name = "httpx AsyncClient"

    def __init__(self) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        self.client = httpx.AsyncClient(trust_env=False, follow_redirects=False, limits=limits, timeout=httpx.Timeout(None, connect=5.0))

    async def complete(self, url: str) -> int:
        response = await self.client.post(url, content=BODY, headers=HEADERS)
        return len(response.content)

    async def stream(self, url: str) -> int:
        got = 0
        async with self.client.stream("POST", url, content=STREAM_BODY, headers=HEADERS) as response:
            async for chunk in response.aiter_raw():
                got += len(chunk)
        return got

    async def aclose(self) -> None:
        await self.client.aclose()


class HttpxTransport:
    """httpx's transport called directly, as host/gateway/reverse_proxy.py does."""

    name = "httpx transport"

    def __init__(self) -> None:
        self.transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=200, max_keepalive_connections=200), trust_env=False)
        self.timeout = httpx.Timeout(None, connect=5.0).as_dict()

    async def _send(self, url: str, body: bytes) -> httpx.Response:
        request = httpx.Request("POST", url, headers=HEADERS, content=body, extensions={"timeout": self.timeout})
        return await self.transport.handle_async_request(request)

    async def complete(self, url: str) -> int:
        response = await self._send(url, BODY)
        try:
            return len(await response.aread())
        finally:
            await response.aclose()

    async def stream(self, url: str) -> int:
        response = await self._send(url, STREAM_BODY)
        got = 0
        try:
            async for chunk in response.aiter_raw():
                got += len(chunk)
        finally:
            await response.aclose()
        return got

    async def aclose(self) -> None:
        await self.transport.aclose()


STREAM_BODY = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello there"}]}).encode()
CLIENTS = (Aiohttp, HttpxClient, HttpxTransport)


async def run_case(call: Callable[[str], Awaitable[int]], url: str, n: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    todo = iter(range(n))

    async def worker() -> None:
        for _ in todo:
            began = time.perf_counter()
            await call(url)
            latencies.append(time.perf_counter() - began)

    for _ in range(min(200, n)):  # warm the pool and the code paths
        await call(url)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    latencies.sort()
    return {
        "cpu_us": cpu / n * 1e6,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99) - 1] * 1e6,
        "rps": n / wall,
    }


CASES = (
    ("non-streaming, 1 at a time", "complete", 1),
    ("non-streaming, 16 concurrent", "complete", 16),
    ("streaming ({chunks} events), 1 at a time", "stream", 1),
)


async def measure(url: str, n: int, rounds: int) -> dict[tuple[str, str], list[dict[str, float]]]:
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for case, method, concurrency in CASES:
            for make in CLIENTS:
                client = make()
                try:
                    got = await run_case(getattr(client, method), url, n, concurrency)
                finally:
                    await client.aclose()
                results.setdefault((case, client.name), []).append(got)
    return results


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="requests per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=20, help="SSE events per streamed answer")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/http_client.md")
    args = parser.parse_args()
    port = free_port()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(port), str(args.chunks)])
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(url, content=BODY, trust_env=False, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        results = uvloop.run(measure(url, args.n, args.rounds))
    finally:
        upstream.terminate()
        upstream.wait(10)
    report = render(results, args)
    args.out.write_text(report)
    print(report)


def render(results: dict[tuple[str, str], list[dict[str, float]]], args: Any) -> str:
    def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
        return sorted(rounds, key=lambda r: r["cpu_us"])[len(rounds) // 2]

    lines = [
        "# HTTP client for the gateway's outbound calls: aiohttp or httpx",
        "",
        "The client side of one OpenAI-compatible call, measured alone (`bench/http_client.py`): a loopback upstream "
        "(uvicorn + uvloop + httptools, its own process, not counted) and a client process on uvloop. "
        "CPU is the client process's CPU time per request; latency is per request, client-side.",
        "",
        f"- Machine: {cpu_model()}, {_cores()} cores (shared with other work), Linux {platform.release()}, Python {platform.python_version()}",
        f"- aiohttp {aiohttp.__version__}, httpx {httpx.__version__}, uvloop {uvloop.__version__}",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Command: `.venv/bin/python bench/http_client.py --n {args.n} --rounds {args.rounds} --chunks {args.chunks}` "
        f"({args.n} requests per case and round after 200 warm-up ones; libraries alternate; the median round by CPU is shown)",
        "",
        "| Case | Client | CPU / request (µs) | p50 latency (µs) | p99 latency (µs) | requests/s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for case, _, _ in CASES:
        label = case.format(chunks=args.chunks)
        for make in CLIENTS:
            r = median_round(results[(case, make.name)])
            lines.append(f"| {label} | {make.name} | {r['cpu_us']:.0f} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['rps']:.0f} |")
    base = {case: median_round(results[(case, "aiohttp")])["cpu_us"] for case, _, _ in CASES}
    lines += ["", "CPU per request relative to aiohttp: " + "; ".join(
        f"{case.format(chunks=args.chunks)}: " + ", ".join(f"{m.name} {median_round(results[(case, m.name)])['cpu_us'] / base[case]:.2f}x" for m in CLIENTS[1:])
        for case, _, _ in CASES
    ) + ".", ""]
    return "\n".join(lines)


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
