"""Virtual keys for one gateway: the key database, the spend ledger, the rate windows and
the authenticator, built from `keys:` and started and stopped with the app."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routeiq.config import LoadedConfig
from routeiq.identity.authenticator import KeyAuthenticator
from routeiq.identity.database import Database, DatabaseUnavailable
from routeiq.identity.keys import KeyStore
from routeiq.identity.rates import MemoryWindow, RedisWindow, Window
from routeiq.identity.spend import SpendLedger

log = logging.getLogger("routeiq.keys")


def database_url(config: LoadedConfig, state_dir: Path) -> str:
    return config.model.keys.database or f"sqlite:///{state_dir / 'keys.db'}"


@dataclass
class Identity:
    db: Database
    store: KeyStore
    ledger: SpendLedger
    window: Window
    authenticator: KeyAuthenticator
    migrated: bool = False
    _task: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, config: LoadedConfig, state_dir: Path) -> "Identity":
        keys = config.model.keys
        db = Database(database_url(config, state_dir), config.base_dir, keys.database_timeout_s)
        store = KeyStore(db)
        ledger = SpendLedger(db, state_dir / "spend-outbox.db", keys.spend_flush_s)
        kv = config.model.kv
        use_redis = keys.rates == "redis" or (keys.rates == "auto" and kv.backend == "redis")
        if use_redis and kv.url is None:
            raise ValueError("keys.rates: redis needs kv.url")
        window: Window = RedisWindow(kv.url, kv.prefix, kv.timeout_s) if use_redis and kv.url else MemoryWindow()
        authenticator = KeyAuthenticator(store, ledger, window, keys.master_key, keys.cache_ttl_s, keys.store_down)
        return cls(db, store, ledger, window, authenticator)  # nothing touched until start()

    def migrate(self) -> bool:
        try:
            self.db.migrate()
            self.migrated = True
        except DatabaseUnavailable as exc:
            log.error("key database not ready (%s): authenticated requests answer 503 until it is; retrying", exc)
        return self.migrated

    async def start(self) -> None:
        """Migrate the schema (once the app serves: check-config and the CLI's own build
        never create or change a database), then the ledger writes."""
        await asyncio.to_thread(self.migrate)
        self.ledger.start()
        if not self.migrated:
            self._task = asyncio.get_running_loop().create_task(self._migrate_until_done())

    async def _migrate_until_done(self) -> None:
        while not await asyncio.to_thread(self.migrate):
            await asyncio.sleep(2.0)
        log.warning("key database ready")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.ledger.stop()
        await self.window.close()
        self.close()

    def close(self) -> None:
        self.ledger.close()
        self.db.close()

    def status(self) -> dict[str, Any]:
        a = self.authenticator
        return {"database": self.db.kind, "migrated": self.migrated, "refused": dict(a.refused), "store_errors": a.store_errors, "spend": self.ledger.status()}


__all__ = ["Identity", "database_url"]
