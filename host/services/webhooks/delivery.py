"""Webhook delivery: signed POSTs of gateway events, queued in a durable SQLite outbox.

`emit` is synchronous and cheap: it hands one outbox row per matching target to the
outbox's writer thread (outbox.py) and wakes the delivery worker. The worker (one asyncio
task per target, so each target gets its events in order) POSTs due rows; a 2xx deletes
the row, anything else schedules the next attempt with capped exponential backoff and
jitter, and after `max_attempts` the row moves to the `dead` table. Each target has a
circuit breaker (`webhook:<name>`) so a target that is down is probed, not hammered; its
rows wait in the outbox meanwhile and survive a restart of the gateway. The event id is
the idempotency key: a receiver that remembers the keys it has processed sees every event
exactly once (see docs/webhooks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping

from routeiq.services.breakers import HALF_OPEN, BreakerBoard, CircuitBreaker
from routeiq.services.http_client import HttpClient

from . import outbox as jobs
from .outbox import NewRow, Outbox, Row
from .signing import EVENT_TYPES, HEADER_ATTEMPT, HEADER_EVENT, HEADER_IDEMPOTENCY_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, sign

log = logging.getLogger("routeiq.webhooks")

USER_AGENT = "routeiq-webhooks/1"


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


class WebhookDispatcher:
    """Queues events per target in a SQLite outbox and delivers them in the background.

    Use one delivering dispatcher per outbox file (`start` takes an exclusive lock on
    `<outbox>.lock`); with several gateway workers, give each its own file. `http` is
    the gateway's HttpClient; without one, the dispatcher makes its own for each
    start/stop (standalone use).
    """

    def __init__(
        self,
        targets: Iterable[WebhookTarget],
        outbox_path: Path,
        breakers: BreakerBoard | None = None,
        clock: Callable[[], float] = time.time,
        *,
        http: HttpClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.targets: dict[str, WebhookTarget] = {}
        for target in targets:
            if target.name in self.targets:
                raise ValueError(f"duplicate webhook target name {target.name!r}")
            self.targets[target.name] = target
        self.outbox = Outbox(Path(outbox_path))
        self.outbox_path = self.outbox.path
        self.breakers = breakers if breakers is not None else BreakerBoard()
        self._clock = clock
        self._sleep_for = sleep  # waits `clock`'s seconds: backoff and cool-downs run on it
        self._random = random.Random()
        self.delivered: Counter[str] = Counter()  # per target, since this object was made
        self.failed_attempts: Counter[str] = Counter()
        self._emit_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakes: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._shared_http = http
        self._http: HttpClient | None = None
        self._flushing = False

    @property
    def emit_errors(self) -> int:
        """Events that could not be queued, or whose rows the outbox file refused for good."""
        return self._emit_errors + self.outbox.write_errors

    # -- producing ---------------------------------------------------------------------

    def emit(self, type: str, payload: Mapping[str, Any]) -> str:
        """Queue an event for every target that wants it; returns the event id (also the
        idempotency key). Fast and synchronous (the outbox writes on its own thread);
        problems are logged, not raised. Safe to call from any thread, before `start`
        and after `stop`."""
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
            self.outbox.append([NewRow(event_id, t.name, type, created, body) for t in wanted])
        except Exception:
            self._emit_errors += 1
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
        self.outbox.claim()
        self._loop = asyncio.get_running_loop()
        self._flushing = False
        self._wakes = {name: asyncio.Event() for name in self.targets}
        self._http = self._shared_http or HttpClient(max_connections=len(self.targets) + 1)
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
        if self._http is not None and self._http is not self._shared_http:
            await self._http.aclose()
        self._http = None
        self._loop = None
        self._wakes = {}
        self.outbox.release()

    def close(self) -> None:
        """Write what is still queued and close the outbox (after `stop`)."""
        self.outbox.close()

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
                row = await self.outbox.run(lambda db: jobs.head(db, target.name))
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
                    # Open: the target is down. Rows stay queued until the cool-down ends
                    # (or, half-open with the probe out, shortly).
                    await self._sleep(wake, max(0.01, breaker.retry_in()))
                    continue
                await self._attempt(target, row, breaker)
            except Exception:  # the outbox itself failed (disk, closed): keep the lane alive
                log.exception("webhook %s: delivery worker error", target.name)
                if self._flushing:
                    return
                await self._sleep(wake, 1.0)

    async def _sleep(self, wake: asyncio.Event, seconds: float) -> None:
        """Wait `seconds` on the dispatcher's clock, or less if `wake` is set."""
        woken = asyncio.ensure_future(wake.wait())
        timer = asyncio.ensure_future(self._sleep_for(seconds))
        try:
            await asyncio.wait((woken, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            timer.cancel()

    async def _attempt(self, target: WebhookTarget, row: Row, breaker: CircuitBreaker) -> None:
        assert self._http is not None
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            HEADER_EVENT: row.type,
            HEADER_IDEMPOTENCY_KEY: row.event_id,
            HEADER_TIMESTAMP: str(timestamp),
            HEADER_SIGNATURE: sign(target.secret, timestamp, row.body),
            HEADER_ATTEMPT: str(row.attempts + 1),
        }
        error = ""
        try:
            async with asyncio.timeout(target.timeout_s):
                response = await self._http.request("POST", target.url, headers=headers, data=row.body, connect_timeout_s=target.timeout_s)
                response.release()  # the status is the answer; the body is not read
                if not 200 <= response.status < 300:
                    error = f"HTTP {response.status}"
        except asyncio.CancelledError:
            if breaker.state == HALF_OPEN:  # do not leave the probe taken forever
                breaker.failure()
            raise
        except TimeoutError:
            error = f"timeout after {target.timeout_s}s"
        except Exception as exc:  # connection refused, reset, protocol error, bad URL...
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not error:
            await self.outbox.run(lambda db: jobs.delete(db, row.seq))
            self.delivered[target.name] += 1
            breaker.success()
            return
        self.failed_attempts[target.name] += 1
        attempts = row.attempts + 1
        now = self._clock()
        if attempts >= target.max_attempts:
            await self.outbox.run(lambda db: jobs.bury(db, row.seq, attempts, error, now))
            log.warning("webhook %s: event %s (%s) is dead after %d attempts: %s", target.name, row.event_id, row.type, attempts, error)
        else:
            next_at = now + target.backoff_s(attempts, self._random.random)
            await self.outbox.run(lambda db: jobs.retry_later(db, row.seq, attempts, next_at, error))
            log.info("webhook %s: event %s attempt %d failed: %s", target.name, row.event_id, attempts, error)
        breaker.failure()

    # -- operations --------------------------------------------------------------------

    def requeue_dead(self, target: str | None = None) -> int:
        """Move dead rows (of one target, or all) back to the end of the outbox for a fresh
        series of attempts (same event id, same body). Returns how many were moved. Waits
        for the outbox's writer thread: an operator's call, not one for the event loop."""
        now = self._clock()
        moved = self.outbox.submit(lambda db: jobs.requeue_dead(db, target, now)).result()
        for name in self.targets if target is None else [target]:
            self._wake(name)
        return moved

    def stats(self) -> dict[str, Any]:
        """Counts for /metrics and /health: pending and dead are what the outbox holds now
        (including rows of targets no longer configured, and rows still on their way to the
        file); delivered and failed_attempts count since this dispatcher was created."""
        pending = self.outbox.pending()
        dead = self.outbox.dead_counts()
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
