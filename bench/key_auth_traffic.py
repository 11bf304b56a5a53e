"""KeyAuthenticator.authenticate on a cached key record while the key keeps being charged:
the budget check adds what this node charged that the cached read could not see
(SpendLedger.unseen), so its cost must not grow with the charges of the last minute.
Prints the median per call after 0, 1000, 10000 and 30000 charges (flushed to SQLite).

Usage: .venv/bin/python bench/key_auth_traffic.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from routeiq.identity.authenticator import KeyAuthenticator
from routeiq.identity.database import Database
from routeiq.identity.keys import KeyStore
from routeiq.identity.rates import MemoryWindow
from routeiq.identity.spend import SpendLedger


async def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    db = Database(f"sqlite:///{tmp / 'keys.db'}", tmp)
    db.migrate()
    store = KeyStore(db)
    token, _ = store.generate(key_alias="bench", max_budget=1e9, budget_duration="30d", rpm_limit=10**9, tpm_limit=10**12, models=["chat"])
    ledger = SpendLedger(db, tmp / "outbox.db")
    auth = KeyAuthenticator(store, ledger, MemoryWindow(), master_key="sk-bench-master", cache_ttl_s=1.0)
    headers = [(b"authorization", f"Bearer {token}".encode())]
    ledger.start()
    consumer = await auth.authenticate(headers, "/v1/chat/completions", None)
    charged = 0
    for n in (0, 1000, 10000, 30000):
        for i in range(n):
            auth.charge(consumer, uuid.uuid4().hex, "chat", "d", 5, 7, 0.001)
            if i % 200 == 0:
                await asyncio.sleep(0)  # let the flusher run, as requests would
        charged += n
        while ledger.written < charged:  # all written: the flusher is idle while we measure
            await asyncio.sleep(0.05)
        runs = []
        for _ in range(7):
            began = time.perf_counter()
            for _ in range(500):
                await auth.authenticate(headers, "/v1/chat/completions", None)
            runs.append((time.perf_counter() - began) / 500 * 1e6)
        print(f"after {n:>6} more charges this minute: authenticate {statistics.median(runs):.1f} µs median per call")
    await ledger.stop()
    ledger.close()
    db.close()


if __name__ == "__main__":
    asyncio.run(main())
