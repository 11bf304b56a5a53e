"""How long an admin change takes to be live on every node: 2 replicas x 4 workers
(`routeiq serve --workers 4` twice) sharing one redis-server on loopback.

Each round sends one admin change to one replica (alternating) and times, from just
before the request until every node's report in Redis says it runs the new version (a
node writes its report right after applying a change), polled every 2 ms. Changes: a
plugin config PUT, a manual quarantine + release, and a module hot swap (each node
fetches the bytes from Redis, checks their sha256 and compiles them on a thread).

    .venv/bin/python bench/replica_convergence.py [--rounds 20] [--out bench/results/convergence.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import redis
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from bench.load.procs import Processes, free_port  # noqa: E402
from bench.machine import cpu_model  # noqa: E402

KEY = "bench-admin-key-0123456789"
REPLICAS, WORKERS = 2, 4
TARGET_S = 1.0


def gateway_config(tmp: Path, name: str, redis_url: str, tagger: Path) -> Path:
    from routeiq.admin.auth import hash_key

    config = {
        "server": {"host": "127.0.0.1", "workers": WORKERS, "access_log": False},
        "kv": {"backend": "redis", "url": redis_url, "prefix": "bench"},
        "admin": {"state_dir": str(tmp / f"state-{name}"), "keys": [{"name": "ops", "sha256": hash_key(KEY), "role": "admin"}]},
        "policy": {"plugins": {"tagger": {"unpinned": True, "capabilities": ["response_body"]}}},
        "runtime": {"cache_dir": str(tmp / "cache")},
        "plugins": [{"name": "tagger", "wasm": str(tagger), "config": {"tag": "file"}}],
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def wait_converged(client: redis.Redis, version: int, nodes: int, timeout_s: float = 30.0) -> float:
    """Seconds until `nodes` node reports carry `version` or later."""
    began = time.perf_counter()
    while True:
        keys = list(client.scan_iter(match="bench:replicas:node:*", count=100))
        reports = [json.loads(v) for v in client.mget(keys) if v] if keys else []
        if len([r for r in reports if r["version"] >= version]) >= nodes:
            return time.perf_counter() - began
        if time.perf_counter() - began > timeout_s:
            raise RuntimeError(f"not converged on version {version} after {timeout_s} s: {[(r['node'], r['version']) for r in reports]}")
        time.sleep(0.002)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "results" / "convergence.md"))
    args = parser.parse_args(argv)
    from routeiq.toolchain.rust import build_rust_guests

    guests = {p.stem: p for p in build_rust_guests(ROOT)}
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    with tempfile.TemporaryDirectory(prefix="routeiq-converge-") as tmp_name:
        tmp = Path(tmp_name)
        redis_port = free_port()
        redis_proc = subprocess.Popen([redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        client = redis.Redis.from_url(redis_url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        try:
            results = run(tmp, guests, redis_url, client, args.rounds)
        finally:
            client.close()
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
    write(results, args)
    return 0


def run(tmp: Path, guests: dict[str, Path], redis_url: str, client: redis.Redis, rounds: int) -> dict[str, list[float]]:
    tagger = tmp / "tagger.wasm"
    shutil.copy(guests["tagger"], tagger)
    with Processes(tmp, "converge") as procs:
        urls = []
        for i in range(REPLICAS):
            port = free_port()
            config = gateway_config(tmp, f"r{i}", redis_url, tagger)
            argv = [sys.executable, "-m", "routeiq", "serve", "--config", str(config), "--port", str(port)]
            procs.start(f"replica{i}", argv, f"http://127.0.0.1:{port}", "/health", timeout_s=120, cwd=ROOT)
            urls.append(f"http://127.0.0.1:{port}")
        nodes = REPLICAS * WORKERS
        wait_converged(client, 0, nodes)
        auth = {"authorization": f"Bearer {KEY}"}
        modules = [guests["tagger"].read_bytes(), guests["chunk_counter"].read_bytes()]

        def change(kind: str, i: int) -> float:
            url = urls[i % REPLICAS] + "/admin/plugins/tagger"
            began = time.perf_counter()
            if kind == "config":
                r = httpx.put(url + "/config", json={"tag": f"round-{i}"}, headers=auth, timeout=30, trust_env=False)
            elif kind == "quarantine":
                r = httpx.post(url + ("/quarantine" if i % 2 == 0 else "/release"), headers=auth, timeout=30, trust_env=False)
            else:
                r = httpx.post(url + "/module", content=modules[i % 2], headers=auth, timeout=60, trust_env=False)
            r.raise_for_status()
            acked = time.perf_counter() - began
            version = int(client.get("bench:replicas:version") or 0)
            return acked + wait_converged(client, version, nodes)

        results: dict[str, list[float]] = {"config": [], "quarantine": [], "module": []}
        for kind in results:
            change(kind, 0)  # warm: first compile, first connections
            for i in range(1, rounds + 1):
                results[kind].append(change(kind, i))
    return results


def write(results: dict[str, list[float]], args: argparse.Namespace) -> None:
    def ms(values: list[float], q: float) -> str:
        ordered = sorted(values)
        return f"{ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] * 1000:.0f}"

    lines = [
        "# Replica convergence: an admin change live on every node",
        "",
        f"{REPLICAS} replicas x {WORKERS} workers (`routeiq serve --workers {WORKERS}`), one redis-server, loopback. "
        "Time from sending the admin request until every node's report says it runs the new version. "
        f"Target: <= {TARGET_S:g} s. Generated by `bench/replica_convergence.py --rounds {args.rounds}`.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        "| Change | rounds | median (ms) | p90 (ms) | max (ms) | within target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for kind, values in results.items():
        within = "yes" if max(values) <= TARGET_S else f"no (max {max(values):.2f} s)"
        lines.append(f"| {kind} | {len(values)} | {statistics.median(values) * 1000:.0f} | {ms(values, 0.9)} | {max(values) * 1000:.0f} | {within} |")
    lines += [
        "",
        "A module swap includes each node fetching the module from Redis, checking its sha256, admitting it under its policy and "
        "compiling it (on a thread; the module cache makes repeats cheap). A change reaches nodes by pub/sub; a node that missed "
        "the message (reconnecting) finds it on its next poll (`replicas.poll_s`, 1 s).",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
