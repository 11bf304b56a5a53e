"""Webhook delivery: signed POSTs of gateway events, queued in a durable SQLite outbox.

`emit` is synchronous and cheap: it writes one outbox row per matching target and wakes
the delivery worker. The worker (one asyncio task per target, so each target gets its
events in order) POSTs due rows; a 2xx deletes the row, anything else schedules the next
attempt with capped exponential backoff and jitter, and after `max_attempts` the row
moves to the `dead` table. Each target has a circuit breaker (`webhook:<name>`) so a
target that is down is probed, not hammered; its rows wait in the outbox meanwhile and
survive a restart of the gateway. The event id is the idempotency key: a receiver that
remembers the keys it has processed sees every event exactly once (see docs/webhooks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import httpx

from .breakers import HALF_OPEN, BreakerBoard, CircuitBreaker

try:  # one delivering dispatcher per outbox file (POSIX advisory lock)
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("routeiq.webhooks")

SIGNATURE_VERSION = "v1"
HEADER_EVENT = "x-routeiq-event"
HEADER_IDEMPOTENCY_KEY = "x-routeiq-idempotency-key"
HEADER_TIMESTAMP = "x-routeiq-timestamp"
HEADER_SIGNATURE = "x-routeiq-signature"
HEADER_ATTEMPT = "x-routeiq-attempt"
USER_AGENT = "routeiq-webhooks/1"


class EventType(StrEnum):
    REQUEST_COMPLETE = "request_complete"
    ERROR = "error"
    MODEL_SWITCH = "model_switch"
    PLUGIN_QUARANTINED = "plugin_quarantined"
    BREAKER_STATE_CHANGE = "breaker_state_change"


EVENT_TYPES: frozenset[str] = frozenset(t.value for t in EventType)


@dataclass
class WebhookTarget:
    name: str
    url: str
    secret: str
    events: list[str] = field(default_factory=lambda: ["*"])  # event types, or ["*"]
    timeout_s: float = 5.0
    max_attempts: int = 10
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0

    def __post_init__(self) -> None:
        unknown = set(self.events) - EVENT_TYPES - {"*"}
        if unknown:
            raise ValueError(f"webhook target {self.name!r}: unknown event types {sorted(unknown)}")
        if self.max_attempts < 1:
            raise ValueError(f"webhook target {self.name!r}: max_attempts must be at least 1")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook target {self.name!r}: url must be http:// or https://")

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events

    def backoff_s(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Delay after the `attempts`-th failed attempt: initial * 2^(attempts-1), capped at
        backoff_max_s, with "equal jitter" (a uniformly random point in its upper half)."""
        base = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(attempts - 1, 62))
        return base / 2 + rand() * base / 2


# -- signatures ------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The value of x-routeiq-signature: `v1=` + hex HMAC-SHA256(secret, "<timestamp>.<body>")."""
    mac = hmac.new(_key(secret), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(secret: str | bytes, headers: Mapping[str, str], body: bytes, tolerance_s: float = 300, now: float | None = None) -> bool:
    """Check a delivery on the receiving side: the signature over the raw body must match
    (constant-time compare) and the timestamp must be within `tolerance_s` of `now`, so a
    captured request cannot be replayed later. Header names are matched case-insensitively;
    the signature header may carry several comma-separated `v1=` values (secret rotation)."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    stamp, signatures = lowered.get(HEADER_TIMESTAMP, ""), lowered.get(HEADER_SIGNATURE, "")
    try:
        timestamp = int(stamp.strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode()
    ok = False
    for candidate in signatures.split(","):
        ok |= hmac.compare_digest(candidate.strip().encode(), expected)  # no early exit
    return ok


# -- the outbox -------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    created    REAL    NOT NULL,
    body       BLOB    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    REAL    NOT NULL,
    last_error TEXT    NOT NULL DEFAULT '',
    UNIQUE (event_id, target)
);
CREATE INDEX IF NOT EXISTS outbox_target_seq ON outbox (target, seq);
CREATE TABLE IF NOT EXISTS dead (
    seq        INTEGER PRIMARY KEY,
    event_id   TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    created    REAL    NOT NULL,
    body       BLOB    NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    died_at    REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_target ON dead (target);
"""


@dataclass(frozen=True)
class _Row:
    seq: int
    event_id: str
    type: str
    body: bytes
    attempts: int
    next_at: float


class WebhookDispatcher:
    """Queues events per target in a SQLite outbox and delivers them in the background.

    Use one delivering dispatcher per outbox file (`start` takes an exclusive lock on
    `<outbox>.lock`); with several gateway workers, give each its own file.
    """

    def __init__(self, targets: Iterable[WebhookTarget], outbox_path: Path, breakers: BreakerBoard | None = None, clock: Callable[[], float] = time.time) -> None:
        self.targets: dict[str, WebhookTarget] = {}
        for target in targets:
            if target.name in self.targets:
                raise ValueError(f"duplicate webhook target name {target.name!r}")
            self.targets[target.name] = target
        self.outbox_path = Path(outbox_path)
        self.breakers = breakers if breakers is not None else BreakerBoard()
        self._clock = clock
        self._random = random.Random()
        self._lock = threading.RLock()
        self.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.outbox_path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        self.delivered: Counter[str] = Counter()  # per target, since this object was made
        self.failed_attempts: Counter[str] = Counter()
        self.emit_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakes: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._flushing = False
        self._lockfile: Any = None

    # -- producing ---------------------------------------------------------------------

    def emit(self, type: str, payload: Mapping[str, Any]) -> str:
        """Queue an event for every target that wants it; returns the event id (also the
        idempotency key). Fast and synchronous; storage problems are logged, not raised.
        Safe to call from any thread, before `start` and after `stop`."""
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {type!r}")
        if not isinstance(payload, Mapping):
            raise TypeError("webhook payload must be a mapping")
        event_id = uuid.uuid4().hex
        created = self._clock()
        wanted = [t for t in self.targets.values() if t.wants(type)]
        if not wanted:
            return event_id
        try:
            body = json.dumps({"id": event_id, "type": type, "created": created, "payload": dict(payload)}, separators=(",", ":"), default=str).encode()
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO outbox (event_id, target, type, created, body, next_at) VALUES (?, ?, ?, ?, ?, ?)",
                        [(event_id, t.name, type, created, body, created) for t in wanted],
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except Exception:
            self.emit_errors += 1
            log.exception("webhook event %s (%s) could not be queued", event_id, type)
            return event_id
        for target in wanted:
            self._wake(target.name)
        return event_id

    def _wake(self, name: str) -> None:
        loop, wake = self._loop, self._wakes.get(name)
        if loop is None or wake is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the next start reads the outbox
                loop.call_soon_threadsafe(wake.set)

    # -- the worker --------------------------------------------------------------------

    async def start(self) -> None:
        """Start delivering (one task per target) on the running event loop."""
        if self._tasks:
            return
        self._take_lock()
        self._loop = asyncio.get_running_loop()
        self._flushing = False
        self._wakes = {name: asyncio.Event() for name in self.targets}
        self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False, headers={"user-agent": USER_AGENT})
        self._tasks = [asyncio.create_task(self._lane(t), name=f"webhook:{t.name}") for t in self.targets.values()]

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Deliver what is due (within `flush_timeout_s`), then stop. Rows not delivered
        stay in the outbox for the next `start`, in this process or the next."""
        if not self._tasks:
            return
        self._flushing = True
        for wake in self._wakes.values():
            wake.set()
        _, pending = await asyncio.wait(self._tasks, timeout=max(0.0, flush_timeout_s))
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("webhook worker failed: %r", result)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._loop = None
        self._wakes = {}
        self._release_lock()

    def close(self) -> None:
        """Close the outbox database (after `stop`)."""
        self._release_lock()
        with self._lock:
            self._db.close()

    def _take_lock(self) -> None:
        if fcntl is None or self._lockfile is not None:
            return
        handle = open(self.outbox_path.with_name(self.outbox_path.name + ".lock"), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RuntimeError(f"another webhook dispatcher is delivering from {self.outbox_path}") from None
        self._lockfile = handle

    def _release_lock(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()  # closing drops the flock
            self._lockfile = None

    def _breaker(self, name: str) -> CircuitBreaker:
        return self.breakers.get(f"webhook:{name}")

    async def _lane(self, target: WebhookTarget) -> None:
        """Deliver one target's rows strictly in order: the oldest row is retried (with
        backoff, behind the breaker) until it is delivered or dead; later rows wait."""
        wake = self._wakes[target.name]
        breaker = self._breaker(target.name)
        while True:
            wake.clear()
            try:
                row = self._head(target.name)
                if row is None:
                    if self._flushing:
                        return
                    await wake.wait()
                    continue
                wait_s = row.next_at - self._clock()
                if wait_s > 0:
                    if self._flushing:
                        return
                    await self._sleep(wake, wait_s)
                    continue
                if not breaker.allow():
                    if self._flushing:
                        return
                    # Open: the target is down. Rows stay queued; look again shortly.
                    await self._sleep(wake, min(0.5, max(0.01, breaker.settings.cooldown_s / 20)))
                    continue
                await self._attempt(target, row, breaker)
            except Exception:  # the outbox itself failed (disk, closed): keep the lane alive
                log.exception("webhook %s: delivery worker error", target.name)
                if self._flushing:
                    return
                await self._sleep(wake, 1.0)

    @staticmethod
    async def _sleep(wake: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)

    async def _attempt(self, target: WebhookTarget, row: _Row, breaker: CircuitBreaker) -> None:
        assert self._client is not None
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            HEADER_EVENT: row.type,
            HEADER_IDEMPOTENCY_KEY: row.event_id,
            HEADER_TIMESTAMP: str(timestamp),
            HEADER_SIGNATURE: sign(target.secret, timestamp, row.body),
            HEADER_ATTEMPT: str(row.attempts + 1),
        }
        error = ""
        try:
            async with asyncio.timeout(target.timeout_s):
                async with self._client.stream("POST", target.url, content=row.body, headers=headers) as response:
                    if not 200 <= response.status_code < 300:
                        error = f"HTTP {response.status_code}"
        except asyncio.CancelledError:
            if breaker.state == HALF_OPEN:  # do not leave the probe taken forever
                breaker.failure()
            raise
        except TimeoutError:
            error = f"timeout after {target.timeout_s}s"
        except Exception as exc:  # connection refused, reset, protocol error, bad URL...
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not error:
            with self._lock:
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (row.seq,))
            self.delivered[target.name] += 1
            breaker.success()
            return
        self.failed_attempts[target.name] += 1
        attempts = row.attempts + 1
        now = self._clock()
        with self._lock:
            if attempts >= target.max_attempts:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT OR REPLACE INTO dead (seq, event_id, target, type, created, body, attempts, last_error, died_at)"
                        " SELECT seq, event_id, target, type, created, body, ?, ?, ? FROM outbox WHERE seq = ?",
                        (attempts, error, now, row.seq),
                    )
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (row.seq,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            else:
                next_at = now + target.backoff_s(attempts, self._random.random)
                self._db.execute("UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE seq = ?", (attempts, next_at, error, row.seq))
        if attempts >= target.max_attempts:
            log.warning("webhook %s: event %s (%s) is dead after %d attempts: %s", target.name, row.event_id, row.type, attempts, error)
        else:
            log.info("webhook %s: event %s attempt %d failed: %s", target.name, row.event_id, attempts, error)
        breaker.failure()

    def _head(self, name: str) -> _Row | None:
        with self._lock:
            found = self._db.execute(
                "SELECT seq, event_id, type, body, attempts, next_at FROM outbox WHERE target = ? ORDER BY seq LIMIT 1", (name,)
            ).fetchone()
        return None if found is None else _Row(found[0], found[1], found[2], bytes(found[3]), found[4], found[5])

    # -- operations --------------------------------------------------------------------

    def requeue_dead(self, target: str | None = None) -> int:
        """Move dead rows (of one target, or all) back to the end of the outbox for a fresh
        series of attempts (same event id, same body). Returns how many were moved."""
        now = self._clock()
        where, args = ("WHERE target = ?", (target,)) if target is not None else ("", ())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                moved = self._db.execute(
                    f"INSERT OR IGNORE INTO outbox (event_id, target, type, created, body, attempts, next_at, last_error)"
                    f" SELECT event_id, target, type, created, body, 0, ?, last_error FROM dead {where} ORDER BY seq",
                    (now, *args),
                ).rowcount
                self._db.execute(f"DELETE FROM dead {where}", args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        for name in self.targets if target is None else [target]:
            self._wake(name)
        return moved

    def stats(self) -> dict[str, Any]:
        """Counts for /metrics and /health: pending and dead are what the outbox holds now
        (including rows of targets no longer configured); delivered and failed_attempts
        count since this dispatcher was created."""
        with self._lock:
            pending = {t: (n, oldest) for t, n, oldest in self._db.execute("SELECT target, COUNT(*), MIN(created) FROM outbox GROUP BY target")}
            dead = dict(self._db.execute("SELECT target, COUNT(*) FROM dead GROUP BY target").fetchall())
        now = self._clock()
        per_target: dict[str, dict[str, Any]] = {}
        for name in sorted({*self.targets, *pending, *dead}):
            count, oldest = pending.get(name, (0, None))
            per_target[name] = {
                "pending": count,
                "delivered": self.delivered[name],
                "failed_attempts": self.failed_attempts[name],
                "dead": dead.get(name, 0),
                "oldest_pending_age_s": round(max(0.0, now - oldest), 3) if oldest is not None else 0.0,
                "configured": name in self.targets,
                "breaker": self._breaker(name).state if name in self.targets else None,
            }
        return {
            "pending": sum(t["pending"] for t in per_target.values()),
            "delivered": sum(self.delivered.values()),
            "failed_attempts": sum(self.failed_attempts.values()),
            "dead": sum(dead.values()),
            "emit_errors": self.emit_errors,
            "running": bool(self._tasks),
            "targets": per_target,
        }
