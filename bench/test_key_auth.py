"""Virtual keys, in process: what the front door's check of one request costs on a cached
key record (KeyAuthenticator.authenticate: hash, cache hit, blocked/expiry/routes, budget,
rpm/tpm window, the Consumer), next to an asyncio no-op as the baseline. Each round awaits
the call 100 times, so the per-request figure is the median / 100.

The end-to-end pair (the same chat pass-through with and without a key, one gateway) is in
test_llm_path.py; this isolates the authentication from loopback and upstream noise.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest

from routeiq.identity.authenticator import KeyAuthenticator
from routeiq.identity.database import Database
from routeiq.identity.keys import KeyStore
from routeiq.identity.rates import MemoryWindow
from routeiq.identity.spend import SpendLedger

PER_ROUND = 100


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.AbstractEventLoop, KeyAuthenticator, list[tuple[bytes, bytes]]]]:
    tmp = tmp_path_factory.mktemp("keys")
    db = Database(f"sqlite:///{tmp / 'keys.db'}", Path(tmp))
    db.migrate()
    store = KeyStore(db)
    token, _ = store.generate(key_alias="bench", max_budget=1e9, budget_duration="30d", rpm_limit=10**9, tpm_limit=10**12, models=["chat"])
    ledger = SpendLedger(db, tmp / "outbox.db")
    # A TTL longer than the run: every call is a cache hit, the steady state of a busy key.
    auth = KeyAuthenticator(store, ledger, MemoryWindow(), master_key="sk-bench-master", cache_ttl_s=3600)
    headers = [(b"host", b"gw"), (b"content-type", b"application/json"), (b"authorization", f"Bearer {token}".encode())]
    loop = asyncio.new_event_loop()
    loop.run_until_complete(auth.authenticate(headers, "/v1/chat/completions", None))  # fills the cache
    yield loop, auth, headers
    loop.close()
    ledger.close()
    db.close()


def test_authenticate_cached_key_x100(benchmark: Any, cached: Any) -> None:
    loop, auth, headers = cached

    async def batch() -> str:
        consumer = None
        for _ in range(PER_ROUND):
            consumer = await auth.authenticate(headers, "/v1/chat/completions", None)
        return consumer.id  # type: ignore[union-attr]

    assert benchmark.pedantic(lambda: loop.run_until_complete(batch()), rounds=200, iterations=1, warmup_rounds=5) == "bench"


def test_asyncio_noop_x100(benchmark: Any, cached: Any) -> None:
    loop = cached[0]

    async def noop() -> None:
        return None

    async def batch() -> int:
        for _ in range(PER_ROUND):
            await noop()
        return PER_ROUND

    assert benchmark.pedantic(lambda: loop.run_until_complete(batch()), rounds=200, iterations=1, warmup_rounds=5) == PER_ROUND
