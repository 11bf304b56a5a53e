"""Spend: what each answered request cost, charged once, kept, and summed.

`charge` is called as a request settles (tokens from the deployment's usage, cost from the
deployment's price). Charges are batched and written by one task every `flush_s`, each in
one transaction: the request's spend log row (its request id is the primary key, so a
charge written twice — a retried flush, an outbox replayed after a crash — counts once),
the key's and the team's spend in their budget period, and the daily aggregate. A batch
the database refuses (down, slow) goes to a local outbox (SQLite beside the state) and is
written when the database answers again: a charge that was accepted is never lost, and a
gateway restart replays the outbox first.

Budgets are checked against the key's spend as last read from the database plus what
this node charged that the read could not have seen (`unseen`), so a node never lets a
key run past its budget by more than what other nodes charged within the key cache's
TTL."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .database import Database, DatabaseUnavailable, Transaction
from .keys import current_spend, next_reset

log = logging.getLogger("routeiq.spend")


@dataclass(frozen=True)
class Charge:
    request_id: str
    token_hash: str
    key_alias: str | None
    team_id: str  # "" without a team
    user_id: str | None
    model_group: str
    deployment: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    at: float

    @property
    def day(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.at))


class _Outbox:
    """Charges the database did not take yet, durable across restarts. One file per host:
    workers share it (SQLite locks it; a row two workers replay counts once anyway)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:  # opened on first use: building an app creates no file
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS pending (request_id TEXT PRIMARY KEY, charge TEXT NOT NULL)")
            self._db = conn
        return self._db

    def put(self, charges: list[Charge]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR IGNORE INTO pending VALUES (?, ?)", [(c.request_id, json.dumps(asdict(c))) for c in charges])
            self._conn.execute("COMMIT")

    def take(self, limit: int = 500) -> list[Charge]:
        with self._lock:
            rows = self._conn.execute("SELECT charge FROM pending ORDER BY rowid LIMIT ?", (limit,)).fetchall()
        return [Charge(**json.loads(r[0])) for r in rows]

    def done(self, charges: list[Charge]) -> None:
        with self._lock:
            self._conn.executemany("DELETE FROM pending WHERE request_id = ?", [(c.request_id,) for c in charges])

    def size(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class SpendLedger:
    def __init__(self, db: Database, outbox: Path, flush_s: float = 0.05, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.flush_s = flush_s
        self.clock = clock
        self._outbox = _Outbox(outbox)
        self._pending: list[Charge] = []
        self._lock = threading.Lock()
        # For `unseen`, per key / team scope: the cost not written yet, and what each flush
        # wrote ([written at, the row's last charge number, cost], oldest first). Sums per
        # flush keep `unseen` O(flushes since the read) on the request path.
        self._unwritten: dict[str, float] = defaultdict(float)
        self._flushed: dict[str, deque[list[Any]]] = defaultdict(deque)
        self._entries: dict[str, tuple[float, list[str]]] = {}  # request id -> (cost, scopes), until written
        # This node's charges, for /metrics: (team, key alias, model group) -> cost, prompt, completion, requests
        self.charged: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])
        self.written = 0
        self.failures = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    # --------------------------------------------------------------- charging
    def charge(self, charge: Charge) -> None:
        """Accept one request's charge (cheap: the write happens on the flusher)."""
        scopes = self._scopes(charge)
        with self._lock:
            if charge.request_id in self._entries:
                return  # this request is charged already
            self._pending.append(charge)
            self._entries[charge.request_id] = (charge.cost, scopes)
            for scope in scopes:
                self._unwritten[scope] += charge.cost
        label = (charge.team_id, charge.key_alias or charge.token_hash[:12], charge.model_group)
        totals = self.charged[label]
        totals[0] += charge.cost
        totals[1] += charge.prompt_tokens
        totals[2] += charge.completion_tokens
        totals[3] += 1
        if self._wake is not None and len(self._pending) >= 200:
            self._wake.set()

    @staticmethod
    def _scopes(charge: Charge) -> list[str]:
        return [f"key:{charge.token_hash}"] + ([f"team:{charge.team_id}"] if charge.team_id else [])

    def unseen(self, scope: str, seen: int) -> float:
        """Cost this node charged to `scope` (`key:<hash>`, `team:<id>`) that a database
        read which saw `seen` charges (the row's `charges`) did not include: still
        pending, or written by a flush that gave the row a later charge number. Exact: a
        flush's charges to one row commit together, so a read sees all of them or none."""
        with self._lock:
            total = max(0.0, self._unwritten.get(scope, 0.0))  # float drift never makes it negative
            flushed = self._flushed.get(scope)
            if not flushed:
                return total
            horizon = self.clock() - 60.0
            while flushed and flushed[0][0] < horizon:
                flushed.popleft()  # written a minute ago: every read since sees it
            for _, last, cost in reversed(flushed):
                if last <= seen:
                    break
                total += cost
            return total

    # ---------------------------------------------------------------- writing
    def flush(self) -> int:
        """Write the outbox, then what is pending (synchronous). Returns charges written;
        on a database failure the pending batch is moved to the outbox."""
        written = 0
        while True:
            backlog = self._outbox.take()
            if not backlog:
                break
            self._write(backlog)  # raises DatabaseUnavailable: the outbox keeps them
            self._outbox.done(backlog)
            written += len(backlog)
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return written
        try:
            self._write(batch)
        except DatabaseUnavailable:
            self._outbox.put(batch)
            raise
        return written + len(batch)

    def _write(self, batch: list[Charge]) -> None:
        numbers: dict[str, dict[str, int]] = {}  # request id -> scope -> the row's charge number
        with self.db.transaction() as tx:
            for charge in batch:
                numbers[charge.request_id] = self._write_one(tx, charge)
        now = self.clock()
        with self._lock:
            for c in batch:
                entry = self._entries.pop(c.request_id, None)
                if entry is None:
                    continue
                cost, scopes = entry
                for scope in scopes:
                    self._unwritten[scope] -= cost
                    number = numbers[c.request_id].get(scope)
                    if number is None:
                        continue  # the row is gone (deleted key or team)
                    flushed = self._flushed[scope]
                    if flushed and flushed[-1][0] == now:
                        flushed[-1][1] = max(flushed[-1][1], number)  # this flush's sum
                        flushed[-1][2] += cost
                    else:
                        flushed.append([now, number, cost])
        self.written += len(batch)

    def _write_one(self, tx: Transaction, c: Charge) -> dict[str, int]:
        """Write one charge; returns each charged row's charge number, by scope."""
        numbers: dict[str, int] = {}
        row = {**asdict(c), "day": c.day}
        inserted = tx.execute(
            "INSERT INTO spend_logs (request_id, token_hash, key_alias, team_id, user_id, model_group, deployment, prompt_tokens, completion_tokens, cost, at, day) "
            "VALUES (:request_id, :token_hash, :key_alias, :team_id, :user_id, :model_group, :deployment, :prompt_tokens, :completion_tokens, :cost, :at, :day) "
            "ON CONFLICT (request_id) DO NOTHING",
            row,
        )
        if not inserted:
            return numbers  # charged before: once per request
        lock = " FOR UPDATE" if self.db.kind == "postgresql" else ""
        for table, column, value, scope in (("keys", "token_hash", c.token_hash, f"key:{c.token_hash}"), ("teams", "team_id", c.team_id, f"team:{c.team_id}")):
            if not value:
                continue
            rows = tx.query(f"SELECT spend, charges, budget_duration, budget_reset_at FROM {table} WHERE {column} = :v{lock}", {"v": value})
            if not rows and table == "keys":  # rotated meanwhile: the successor pays
                successor = tx.query("SELECT new_hash FROM rotated_keys WHERE old_hash = :v", {"v": value})
                if successor:
                    value = successor[0]["new_hash"]
                    rows = tx.query(f"SELECT spend, charges, budget_duration, budget_reset_at FROM keys WHERE token_hash = :v{lock}", {"v": value})
            if not rows:
                continue  # deleted meanwhile: the log row keeps the record
            r = rows[0]
            spend = current_spend(float(r["spend"]), r["budget_reset_at"], c.at) + c.cost
            reset = next_reset(r["budget_reset_at"], r["budget_duration"], c.at) if r["budget_duration"] else None
            number = int(r["charges"]) + 1
            tx.execute(f"UPDATE {table} SET spend = :s, charges = :n, budget_reset_at = :r WHERE {column} = :v", {"s": spend, "n": number, "r": reset, "v": value})
            numbers[scope] = number
        tx.execute(
            "INSERT INTO daily_spend (day, token_hash, team_id, model_group, requests, prompt_tokens, completion_tokens, cost) "
            "VALUES (:day, :token_hash, :team_id, :model_group, 1, :prompt_tokens, :completion_tokens, :cost) "
            "ON CONFLICT (day, token_hash, team_id, model_group) DO UPDATE SET requests = daily_spend.requests + 1, "
            "prompt_tokens = daily_spend.prompt_tokens + excluded.prompt_tokens, completion_tokens = daily_spend.completion_tokens + excluded.completion_tokens, "
            "cost = daily_spend.cost + excluded.cost",
            row,
        )
        return numbers

    # ------------------------------------------------------------- background
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self._flush_logged()

    async def _flush_logged(self) -> None:
        try:
            await asyncio.to_thread(self.flush)
            if self.last_error is not None:
                log.warning("spend database reachable again; outbox written")
            self.last_error = None
        except DatabaseUnavailable as exc:
            self.failures += 1
            if self.last_error is None:
                log.error("spend database unreachable (%s): charges are kept in the outbox until it answers", exc)
            self.last_error = str(exc)
        except Exception:
            log.exception("spend flush failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self._flush_logged()  # what is due goes to the database, or to the outbox

    def status(self) -> dict[str, Any]:
        return {"written": self.written, "pending": len(self._pending), "outbox": self._outbox.size(), "failures": self.failures, "last_error": self.last_error}

    def close(self) -> None:
        self._outbox.close()

    # ---------------------------------------------------------------- queries
    def logs(self, token_hash: str | None = None, team_id: str | None = None, start: float | None = None, end: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, params = [], {"limit": int(limit)}
        for column, value in (("token_hash", token_hash), ("team_id", team_id)):
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        if start is not None:
            where.append("at >= :start")
            params["start"] = start
        if end is not None:
            where.append("at < :end")
            params["end"] = end
        sql = "SELECT * FROM spend_logs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY at DESC LIMIT :limit"
        return self.db.query(sql, params)

    def totals_by(self, column: str, start_day: str | None = None, end_day: str | None = None) -> list[dict[str, Any]]:
        return self.totals(self.db, column, start_day, end_day)

    @staticmethod
    def totals(db: Database, column: str, start_day: str | None = None, end_day: str | None = None) -> list[dict[str, Any]]:
        """Spend and tokens grouped by `column` (token_hash, team_id, model_group, day)."""
        if column not in ("token_hash", "team_id", "model_group", "day"):
            raise ValueError(column)
        where, params = [], {}
        if start_day is not None:
            where.append("day >= :start")
            params["start"] = start_day
        if end_day is not None:
            where.append("day <= :end")
            params["end"] = end_day
        sql = (
            f"SELECT {column}, CAST(SUM(requests) AS BIGINT) AS requests, CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, "
            f"CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, SUM(cost) AS spend "
            f"FROM daily_spend{' WHERE ' + ' AND '.join(where) if where else ''} GROUP BY {column} ORDER BY spend DESC"
        )
        return db.query(sql, params)


__all__ = ["Charge", "SpendLedger"]
