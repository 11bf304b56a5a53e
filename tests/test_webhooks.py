"""Webhook delivery against a real receiver on loopback and a real SQLite outbox file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routeiq.services.breakers import BreakerBoard, BreakerSettings
from routeiq.services.webhooks import EVENT_TYPES, WebhookDispatcher, WebhookTarget, sign, verify_signature
from support import FakeClock, free_port, serve

SECRET = "whsec-test-3f9a"
TYPES = ["request_complete", "error", "model_switch", "plugin_quarantined", "breaker_state_change"]


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float  # the receiver's clock when the request arrived

    @property
    def key(self) -> str:
        return self.headers["x-routeiq-idempotency-key"]

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver: verifies each delivery, records it, answers `status`.
    `delay_first_s` makes it sit on the first delivery of each key (a lost response)."""

    def __init__(self, secret: str = SECRET, clock: Callable[[], float] | None = None) -> None:
        self.secret = secret
        self.clock = clock  # the senders' clock, when the test runs them on a FakeClock
        self.status = 200
        self.delay_first_s = 0.0
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hook/{name:path}", self.hook, methods=["POST"]), Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        now = self.clock() if self.clock else None
        verified = verify_signature(self.secret, request.headers, body, now=now)
        delivery = Delivery(request.url.path, dict(request.headers), body, verified, time.monotonic() if now is None else now)
        with self._lock:
            first = delivery.key not in {d.key for d in self.deliveries}
            self.deliveries.append(delivery)
        if first and self.delay_first_s:
            await asyncio.sleep(self.delay_first_s)
        return Response(status_code=self.status if delivery.verified else 401)

    def keys(self, path: str | None = None) -> list[str]:
        with self._lock:
            return [d.key for d in self.deliveries if path is None or d.path == path]


class ReceiverServer:
    """uvicorn on a fixed loopback port that can go down and come back on the same port."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("receiver did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = self._thread = None


async def run_clock_until(clock: FakeClock, check: Callable[[], Any], timeout: float = 20.0) -> None:
    """Let the dispatcher run on `clock` until `check()` holds: whenever everything it does
    is waiting on the clock, move the clock to the end of the earliest wait."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        wait = clock.next_wake()
        if wait is not None:
            clock.advance(wait)
        await asyncio.sleep(0.01)


async def until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_signed_delivery(tmp_path: Path) -> None:
    receiver = Receiver()
    with serve(receiver.app) as base:
        target = WebhookTarget("sink", f"{base}/hook", SECRET, ["*"])
        payload = {"request_id": "req-1", "model": "gpt-4o-mini", "latency_ms": 12.5, "plugin": None}

        async def scenario() -> tuple[str, dict[str, Any]]:
            dispatcher = WebhookDispatcher([target], tmp_path / "outbox.db")
            await dispatcher.start()
            event_id = dispatcher.emit("request_complete", payload)
            await until(lambda: receiver.deliveries)
            await dispatcher.stop()
            stats = dispatcher.stats()
            dispatcher.close()
            return event_id, stats

        before = time.time()
        event_id, stats = asyncio.run(scenario())

    (delivery,) = receiver.deliveries
    assert delivery.verified
    headers = delivery.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-routeiq-event"] == "request_complete"
    assert headers["x-routeiq-idempotency-key"] == event_id and len(event_id) == 32
    assert headers["x-routeiq-attempt"] == "1"
    timestamp = int(headers["x-routeiq-timestamp"])
    assert int(before) <= timestamp <= time.time() + 1
    assert headers["x-routeiq-signature"] == sign(SECRET, timestamp, delivery.body)
    assert headers["x-routeiq-signature"].startswith("v1=")
    event = delivery.event
    assert set(event) == {"id", "type", "created", "payload"}
    assert event["id"] == event_id and event["type"] == "request_complete" and event["payload"] == payload
    assert before - 1 <= event["created"] <= time.time()
    assert not verify_signature("another-secret", headers, delivery.body)
    assert stats["pending"] == 0 and stats["delivered"] == 1 and stats["failed_attempts"] == 0 and stats["dead"] == 0
    assert stats["targets"]["sink"]["delivered"] == 1


def test_tampered_or_replayed_deliveries_fail_verification() -> None:
    body = json.dumps({"id": "ab" * 16, "type": "error", "created": 1.0, "payload": {"request_id": "r"}}).encode()
    now = 1_700_000_000
    headers = {"X-RouteIQ-Timestamp": str(now), "X-RouteIQ-Signature": sign(SECRET, now, body)}
    assert verify_signature(SECRET, headers, body, now=now)  # header names are case-insensitive
    assert verify_signature(SECRET, headers, body, now=now + 299)
    # Tampering: a changed body, a different secret, a moved timestamp, a mangled signature.
    assert not verify_signature(SECRET, headers, body.replace(b'"r"', b'"x"'), now=now)
    assert not verify_signature(SECRET, headers, body + b" ", now=now)
    assert not verify_signature("other", headers, body, now=now)
    assert not verify_signature(SECRET, {**headers, "X-RouteIQ-Timestamp": str(now + 1)}, body, now=now)
    signature = headers["X-RouteIQ-Signature"]
    flipped = signature[:-1] + ("1" if signature.endswith("0") else "0")
    assert not verify_signature(SECRET, {**headers, "X-RouteIQ-Signature": flipped}, body, now=now)
    assert not verify_signature(SECRET, {**headers, "X-RouteIQ-Signature": headers["X-RouteIQ-Signature"].removeprefix("v1=")}, body, now=now)
    # Replay: the same request later than the tolerance (or from too far in the future).
    assert not verify_signature(SECRET, headers, body, now=now + 301)
    assert not verify_signature(SECRET, headers, body, tolerance_s=10, now=now + 11)
    assert not verify_signature(SECRET, headers, body, now=now - 301)
    # Missing or malformed headers.
    assert not verify_signature(SECRET, {}, body, now=now)
    assert not verify_signature(SECRET, {**headers, "X-RouteIQ-Timestamp": "soon"}, body, now=now)
    # Secret rotation: any one of several v1 signatures may match.
    rotated = {**headers, "X-RouteIQ-Signature": f"{sign('old-secret', now, body)}, {headers['X-RouteIQ-Signature']}"}
    assert verify_signature(SECRET, rotated, body, now=now)


def test_a_receiver_can_verify_with_the_signing_module_alone() -> None:
    """A receiver imports only the wire contract: no HTTP client, outbox or gateway."""
    probe = (
        "import sys; from routeiq.services.webhooks.signing import sign, verify_signature; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'aiohttp', 'sqlite3') "
        "or m.startswith(('routeiq.gateway', 'routeiq.services.webhooks.outbox', 'routeiq.services.webhooks.delivery'))))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_outage_restart_delivers_every_event_once(tmp_path: Path) -> None:
    """The receiver goes down, 20 events pile up in the outbox, the gateway restarts (a new
    dispatcher on the same file), the receiver comes back on the same port: every event
    arrives, in order, and none twice."""
    port = free_port()
    receiver = Receiver()
    server = ReceiverServer(receiver.app, port)
    outbox = tmp_path / "outbox.db"
    target = WebhookTarget("sink", f"http://127.0.0.1:{port}/hook", SECRET, ["*"], timeout_s=1, max_attempts=1000, backoff_initial_s=0.05, backoff_max_s=0.2)
    settings = BreakerSettings(consecutive_failures=3, window_s=10, cooldown_s=0.2)

    async def before_restart() -> tuple[str, list[str], dict[str, Any]]:
        dispatcher = WebhookDispatcher([target], outbox, BreakerBoard(settings))
        await dispatcher.start()
        server.start()
        warm = dispatcher.emit("model_switch", {"request_id": "warm-up", "from": "a", "to": "b"})
        await until(lambda: dispatcher.stats()["delivered"] == 1)  # received and acknowledged
        server.stop()  # the receiver is down: nothing listens on the port
        emitted = [dispatcher.emit(TYPES[i % len(TYPES)], {"request_id": f"req-{i}", "seq": i}) for i in range(20)]
        assert dispatcher.stats()["pending"] == 20
        await until(lambda: dispatcher.stats()["failed_attempts"] >= settings.consecutive_failures)
        await until(lambda: dispatcher.stats()["targets"]["sink"]["breaker"] != "closed")
        # Only one dispatcher may deliver from an outbox file at a time.
        other = WebhookDispatcher([target], outbox)
        with pytest.raises(RuntimeError, match="another webhook dispatcher"):
            await other.start()
        other.close()
        await dispatcher.stop(flush_timeout_s=1.0)  # the gateway goes away
        stats = dispatcher.stats()
        dispatcher.close()
        return warm, emitted, stats

    async def after_restart() -> tuple[int, dict[str, Any]]:
        dispatcher = WebhookDispatcher([target], outbox, BreakerBoard(settings))
        pending_at_start = dispatcher.stats()["pending"]
        server.start()  # the receiver is back, same port
        await dispatcher.start()
        await until(lambda: dispatcher.stats()["pending"] == 0)
        await dispatcher.stop()
        stats = dispatcher.stats()
        dispatcher.close()
        return pending_at_start, stats

    try:
        warm, emitted, down = asyncio.run(before_restart())
        assert down["pending"] == 20 and down["delivered"] == 1 and down["dead"] == 0 and down["failed_attempts"] >= 3
        pending_at_start, up = asyncio.run(after_restart())
    finally:
        server.stop()

    assert pending_at_start == 20
    assert up["pending"] == 0 and up["delivered"] == 20 and up["dead"] == 0
    received = [d for d in receiver.deliveries if d.key != warm]
    assert all(d.verified for d in received)
    keys = [d.key for d in received]
    dedup = set(keys)
    assert dedup == set(emitted) and len(dedup) == 20
    # A key may arrive twice only if a delivery was retried after its response was lost:
    # here no attempt reached the receiver before the restart (connection refused) and no
    # attempt failed after it, so there must be no duplicate at all.
    assert up["failed_attempts"] == 0
    assert len(keys) == 20
    assert keys == emitted  # in order, per target
    for i, delivery in enumerate(received):
        assert delivery.event["payload"] == {"request_id": f"req-{i}", "seq": i}
        assert delivery.headers["x-routeiq-event"] == TYPES[i % len(TYPES)]


def test_retry_after_lost_response_keeps_idempotency_key(tmp_path: Path) -> None:
    """The receiver processes a delivery but the answer comes too late: the retry carries
    the same key and body, so the receiver's de-duplication collapses it."""
    receiver = Receiver()
    receiver.delay_first_s = 0.6
    with serve(receiver.app) as base:
        target = WebhookTarget("sink", f"{base}/hook", SECRET, timeout_s=0.25, backoff_initial_s=0.05, backoff_max_s=0.1)

        async def scenario() -> tuple[str, dict[str, Any]]:
            dispatcher = WebhookDispatcher([target], tmp_path / "outbox.db")
            await dispatcher.start()
            event_id = dispatcher.emit("error", {"request_id": "req-9", "error": "upstream_timeout"})
            await until(lambda: dispatcher.stats()["delivered"] == 1)
            await dispatcher.stop()
            stats = dispatcher.stats()
            dispatcher.close()
            return event_id, stats

        event_id, stats = asyncio.run(scenario())

    assert stats["failed_attempts"] == 1 and stats["delivered"] == 1 and stats["pending"] == 0
    first, second = receiver.deliveries
    assert first.key == second.key == event_id and first.body == second.body
    assert (first.headers["x-routeiq-attempt"], second.headers["x-routeiq-attempt"]) == ("1", "2")
    assert first.verified and second.verified
    assert len(set(receiver.keys())) == 1


def test_backoff_breaker_and_dead_letters(tmp_path: Path) -> None:
    """Backoff, the breaker's cool-downs and dead letters, on a clock the test moves: the
    dispatcher and its breaker wait on it (never on the wall clock), so every gap between
    attempts is the exact delay the dispatcher chose."""
    clock = FakeClock()
    receiver = Receiver(clock=clock)
    receiver.status = 503  # up, but failing
    transitions: list[tuple[str, str, float]] = []
    settings = BreakerSettings(consecutive_failures=3, window_s=300, cooldown_s=30, half_open_probes=1)
    board = BreakerBoard(settings, lambda name, old, new: transitions.append((old, new, clock())), clock=clock)
    outbox = tmp_path / "outbox.db"
    with serve(receiver.app) as base:
        target = WebhookTarget("flaky", f"{base}/hook", SECRET, ["*"], timeout_s=5, max_attempts=6, backoff_initial_s=2, backoff_max_s=8)
        dispatcher = WebhookDispatcher([target], outbox, board, clock=clock, sleep=clock.sleep)

        async def failing() -> tuple[str, str, dict[str, Any]]:
            await dispatcher.start()
            first = dispatcher.emit("request_complete", {"request_id": "one"})
            second = dispatcher.emit("request_complete", {"request_id": "two"})
            await run_clock_until(clock, lambda: dispatcher.stats()["dead"] == 1)
            await dispatcher.stop(flush_timeout_s=0.2)
            return first, second, dispatcher.stats()

        first, second, stats = asyncio.run(failing())
        hits = list(receiver.deliveries)

        # The head row is retried max_attempts times; the row behind it waits its turn
        # (delivery is in order per target, and the target is not hammered with both).
        assert [h.key for h in hits] == [first] * 6
        assert [h.headers["x-routeiq-attempt"] for h in hits] == ["1", "2", "3", "4", "5", "6"]
        assert stats["dead"] == 1 and stats["pending"] == 1 and stats["failed_attempts"] == 6 and stats["delivered"] == 0
        gaps = [b.at - a.at for a, b in zip(hits, hits[1:])]
        # Exponential backoff with equal jitter: the n-th retry waits between half of and
        # all of initial * 2^(n-1).
        assert 1 <= gaps[0] <= 2 and 2 <= gaps[1] <= 4
        # The third failure opened the breaker; from then on each attempt is the one probe
        # of a half-open period, a whole cool-down after the failure that (re)opened it
        # (the row's own backoff, 4-8 s, ends inside the cool-down).
        assert transitions[0] == ("closed", "open", hits[2].at)
        assert [(o, n) for o, n, _ in transitions] == [("closed", "open")] + [("open", "half_open"), ("half_open", "open")] * 3
        # (the lane sleeps the cool-down's rest; it may look once more 10 ms later when
        # float rounding ends that sleep a hair early)
        assert gaps[2:] == [pytest.approx(settings.cooldown_s, abs=0.011)] * 3
        for (_, new, at), probe in zip(transitions[1::2], hits[3:]):
            assert new == "half_open" and at == probe.at

        with sqlite3.connect(outbox) as db:
            dead = db.execute("SELECT event_id, target, attempts, last_error FROM dead").fetchall()
            pending = db.execute("SELECT event_id, attempts FROM outbox").fetchall()
        assert dead == [(first, "flaky", 6, "HTTP 503")]
        assert pending == [(second, 0)]

        # Recovery: the receiver is healthy again, dead rows are requeued by hand; the
        # breaker's probe (after its cool-down) succeeds and closes it.
        receiver.status = 200

        async def recover() -> dict[str, Any]:
            assert dispatcher.requeue_dead() == 1
            await dispatcher.start()
            await run_clock_until(clock, lambda: dispatcher.stats()["pending"] == 0)
            await dispatcher.stop()
            return dispatcher.stats()

        after = asyncio.run(recover())
        dispatcher.close()
    assert after["delivered"] == 2 and after["dead"] == 0 and after["targets"]["flaky"]["breaker"] == "closed"
    delivered = [d.key for d in receiver.deliveries[6:]]
    assert delivered == [second, first]  # the requeued row goes to the back of the line
    assert receiver.deliveries[6].at == pytest.approx(hits[5].at + settings.cooldown_s, abs=0.011)


def test_events_are_filtered_per_target(tmp_path: Path) -> None:
    receiver = Receiver()
    with pytest.raises(ValueError, match="unknown event types"):
        WebhookTarget("bad", "http://127.0.0.1:1/hook", SECRET, ["request_complete", "nope"])
    with serve(receiver.app) as base:
        targets = [
            WebhookTarget("errors", f"{base}/hook/errors", SECRET, ["error", "model_switch"]),
            WebhookTarget("all", f"{base}/hook/all", SECRET, ["*"]),
            WebhookTarget("plugins", f"{base}/hook/plugins", SECRET, ["plugin_quarantined"]),
        ]

        async def scenario() -> tuple[dict[str, str], dict[str, Any]]:
            dispatcher = WebhookDispatcher(targets, tmp_path / "outbox.db")
            await dispatcher.start()
            ids = {t: dispatcher.emit(t, {"request_id": f"req-{t}"}) for t in TYPES[:-1]}
            # emit is thread-safe: a call from another thread wakes the worker too.
            ids[TYPES[-1]] = await asyncio.to_thread(dispatcher.emit, TYPES[-1], {"request_id": "from-thread"})
            with pytest.raises(ValueError):
                dispatcher.emit("not_an_event", {})
            await until(lambda: dispatcher.stats()["pending"] == 0 and len(receiver.deliveries) == 8)
            await dispatcher.stop()
            stats = dispatcher.stats()
            dispatcher.close()
            return ids, stats

        ids, stats = asyncio.run(scenario())

    assert set(ids) == EVENT_TYPES
    by_path = {path: {json.loads(d.body)["type"] for d in receiver.deliveries if d.path == path} for path in ("/hook/errors", "/hook/all", "/hook/plugins")}
    assert by_path == {"/hook/errors": {"error", "model_switch"}, "/hook/all": set(EVENT_TYPES), "/hook/plugins": {"plugin_quarantined"}}
    assert receiver.keys("/hook/all") == list(ids.values())
    assert len(receiver.deliveries) == 8 and all(d.verified for d in receiver.deliveries)
    assert {name: t["delivered"] for name, t in stats["targets"].items()} == {"errors": 2, "all": 5, "plugins": 1}
