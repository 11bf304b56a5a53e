"""Virtual keys across two `routeiq serve --workers 2` replicas sharing a real PostgreSQL
(keys, spend) and a real Redis (rpm/tpm windows): limits exact across every worker,
spend summed once, a revocation seen by every node within keys.cache_ttl_s, and the
database killed mid-load: requests fail closed, no acknowledged charge is lost."""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

from support import PostgresServer, free_port, postgres_server, redis_server

ROOT = Path(__file__).resolve().parents[1]
MASTER = "sk-master-replicas-0123"
M = {"authorization": f"Bearer {MASTER}"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi there friend"}]}  # 8 tokens, 0.008 at 1.0/1k
TTL_S = 0.5


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[PostgresServer, str]]:
    with postgres_server() as pg, redis_server() as redis_url:
        yield pg, redis_url


def replica(tmp_path: Path, name: str, pg_url: str, redis_url: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "workers": 2, "access_log": False},
        "kv": {"backend": "redis", "url": redis_url, "prefix": f"k{tmp_path.name[-8:]}"},
        "keys": {"enabled": True, "master_key": MASTER, "database": pg_url, "cache_ttl_s": TTL_S, "database_timeout_s": 1.0},
        "admin": {"state_dir": str(tmp_path / f"state-{name}")},
        "model_list": [{"model_name": "chat", "litellm_params": {"model": "openai/mock", "api_base": "embedded"}, "model_info": {"cost_per_1k_tokens": 1.0}}],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "routeiq", "serve", "--config", str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(url + "/health", timeout=2, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "replica did not start"
        time.sleep(0.1)


@contextlib.contextmanager
def two_replicas(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[tuple[str, str]]:
    started = []
    try:
        for name in ("a", "b"):
            started.append(replica(tmp_path, name, pg_url, redis_url))
        yield started[0][1], started[1][1]
    finally:
        for proc, _ in started:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                import os

                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def chat(base: str, key: str) -> httpx.Response:
    # A fresh connection each time, so any worker may take it.
    return httpx.post(base + "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}", "connection": "close"}, timeout=30, trust_env=False)


def generate(base: str, **settings: Any) -> str:
    made = httpx.post(base + "/key/generate", json=settings, headers=M, timeout=30, trust_env=False)
    assert made.status_code == 200, made.text
    return str(made.json()["key"])


def key_info(base: str, key: str) -> dict[str, Any]:
    return dict(httpx.get(base + "/key/info", params={"key": key}, headers=M, timeout=30, trust_env=False).json()["info"])


def test_limits_spend_and_revocation_hold_across_replicas(tmp_path: Path, services: tuple[PostgresServer, str]) -> None:
    pg, redis_url = services
    with two_replicas(tmp_path, pg.url, redis_url) as (a, b):
        # A key made on A works on every worker of B at once (no cache entry to wait for).
        key = generate(a, key_alias="shared", rpm_limit=6)
        statuses = [chat(a if i % 2 else b, key).status_code for i in range(12)]
        assert statuses.count(200) == 6 and statuses.count(429) == 6, statuses  # exact across 4 workers

        def spent() -> float:
            return float(key_info(b, "shared")["spend"])

        deadline = time.monotonic() + 10
        while spent() < 6 * 0.008 - 1e-9:
            assert time.monotonic() < deadline, spent()
            time.sleep(0.1)
        assert spent() == pytest.approx(6 * 0.008)  # once per answered request, none for refused ones
        logs = httpx.get(a + "/spend/logs", params={"api_key": "shared"}, headers=M, trust_env=False).json()
        assert len(logs) == 6 and len({r["request_id"] for r in logs}) == 6

        # Blocked on B: within the cache TTL every worker of both replicas refuses it.
        other = generate(b, key_alias="to-revoke")
        assert chat(a, other).status_code == 200 and chat(b, other).status_code == 200
        blocked_at = time.monotonic()
        assert httpx.post(b + "/key/block", json={"key": "to-revoke"}, headers=M, trust_env=False).status_code == 200
        time.sleep(TTL_S + 0.2)
        refused = [chat(a if i % 2 else b, other).status_code for i in range(20)]
        assert refused == [401] * 20, refused
        assert time.monotonic() - blocked_at < 5


def test_database_killed_mid_load_fails_closed_and_loses_no_charge(tmp_path: Path, services: tuple[PostgresServer, str]) -> None:
    pg, redis_url = services
    with two_replicas(tmp_path, pg.url, redis_url) as (a, b):
        key = generate(a, key_alias="under-load")
        answered: list[str] = []
        statuses: list[int] = []
        stop = threading.Event()

        def load(base: str) -> None:
            while not stop.is_set():
                response = chat(base, key)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    answered.append(response.headers["x-request-id"])
                elif response.status_code != 503:
                    raise AssertionError(f"{response.status_code}: {response.text}")  # never a 200 without a readable key, never a 500

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(load, base) for base in (a, b, a, b)]
            time.sleep(1.0)
            pg.stop()  # killed mid-load
            time.sleep(TTL_S + 1.5)
            during = len(statuses)
            time.sleep(1.0)
            outage = statuses[during:]
            # Fail closed: once cached records are stale, every request is a clear 503.
            assert outage and all(s == 503 for s in outage), outage[:20]
            unknown = chat(a, "sk-never-issued-key")
            assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "auth_unavailable"
            pg.start()
            time.sleep(TTL_S + 1.5)
            stop.set()
            for f in futures:
                f.result()
        assert statuses[-1] == 200  # serving again once the database is back
        # Every answered request is charged exactly once, including those answered just
        # before the kill whose charges waited in the outbox.
        deadline = time.monotonic() + 15
        while True:
            logs = httpx.get(a + "/spend/logs", params={"api_key": "under-load", "limit": 10000}, headers=M, trust_env=False).json()
            if len(logs) >= len(answered) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(r["request_id"] for r in logs) == sorted(answered)
        assert float(key_info(b, "under-load")["spend"]) == pytest.approx(0.008 * len(answered))
