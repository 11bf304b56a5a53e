"""Circuit breakers for deployments and dependencies (callout targets, Redis).

closed -> open on a failure *rate*, resilience4j-style: at least `minimum_requests`
calls in the sliding `window_s` and `failure_rate_threshold` of them failed; or on
`consecutive_failures` in a row (Envoy outlier detection's consecutive_5xx), which
catches a target that died outright before the window has volume. A rare failure in
a stream of successes never opens it. open -> half-open after `cooldown_s`; half-open
lets `half_open_probes` calls through: a success closes the breaker, a failure opens
it again for another cool-down. A probe that ends without an outcome (the caller was
cancelled) hands its slot back with `release`, so a breaker can never stay half-open
with every probe slot taken by calls that are gone.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class BreakerSettings:
    failure_rate_threshold: float = 0.5  # share of failed calls in the window that opens it
    minimum_requests: int = 20  # calls the window needs before the rate counts
    consecutive_failures: int = 5  # failures in a row that open it regardless (0: off)
    window_s: float = 30.0
    cooldown_s: float = 10.0
    half_open_probes: int = 1


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
Listener = Callable[[str, str, str], None]  # (breaker name, old state, new state)
_BUCKETS = 30  # the sliding window is counted in this many time buckets


class _Window:
    """Calls and failures over the last `window_s`, in fixed time buckets (so memory does
    not grow with the request rate)."""

    def __init__(self, window_s: float) -> None:
        self._width = window_s / _BUCKETS
        self._buckets: deque[list[int]] = deque()  # [bucket index, calls, failures]
        self.calls = 0
        self.failures = 0

    def add(self, now: float, failed: bool) -> None:
        index = math.floor(now / self._width)
        buckets = self._buckets
        while buckets and buckets[0][0] <= index - _BUCKETS:
            _, calls, failures = buckets.popleft()
            self.calls -= calls
            self.failures -= failures
        if not buckets or buckets[-1][0] != index:
            buckets.append([index, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        self.calls += 1
        if failed:
            bucket[2] += 1
            self.failures += 1

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = self.failures = 0


class CircuitBreaker:
    def __init__(self, name: str, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic, listener: Listener | None = None) -> None:
        self.name = name
        self.settings = settings
        self._clock = clock
        self._listener = listener
        self.state = CLOSED
        self._window = _Window(settings.window_s)
        self._streak = 0  # failures in a row
        self._opened_at = 0.0
        self._probes = 0
        self.probe_round = 0  # which half-open period the probes counted in _probes belong to
        self.transitions: Counter[tuple[str, str]] = Counter()

    def _move(self, new: str) -> None:
        old, self.state = self.state, new
        self.transitions[(old, new)] += 1
        if self._listener is not None:
            self._listener(self.name, old, new)

    def allow(self) -> bool:
        """May a call go through now? (Counts a half-open probe when it says yes.)"""
        if self.state == OPEN and self._clock() - self._opened_at >= self.settings.cooldown_s:
            self._move(HALF_OPEN)
            self._probes = 0
            self.probe_round += 1
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and self._probes < self.settings.half_open_probes:
            self._probes += 1
            return True
        return False

    def available(self) -> bool:
        """Would `allow` say yes, without taking a probe? (For routing decisions.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return self._clock() - self._opened_at >= self.settings.cooldown_s
        return self._probes < self.settings.half_open_probes

    def retry_in(self) -> float:
        """Seconds until `allow` may say yes: 0 when it would now, the rest of the cool-down
        when open, and 0 too when half-open with its probes out (their outcome decides)."""
        if self.state == OPEN:
            return max(0.0, self.settings.cooldown_s - (self._clock() - self._opened_at))
        return 0.0

    def release(self, probe_round: int) -> None:
        """Give back a probe slot taken in half-open period `probe_round` without an
        outcome. A slot from an earlier period is gone already (the state moved on)."""
        if self.state == HALF_OPEN and self.probe_round == probe_round and self._probes > 0:
            self._probes -= 1

    def success(self) -> None:
        if self.state == HALF_OPEN:
            self._reset()
            self._move(CLOSED)
        elif self.state == CLOSED:
            self._streak = 0
            self._window.add(self._clock(), False)

    def failure(self) -> None:
        now = self._clock()
        if self.state == HALF_OPEN:
            self._opened_at = now
            self._move(OPEN)
            return
        if self.state == OPEN:
            return
        self._streak += 1
        window = self._window
        window.add(now, True)
        s = self.settings
        if (s.consecutive_failures and self._streak >= s.consecutive_failures) or (
            window.calls >= s.minimum_requests and window.failures >= s.failure_rate_threshold * window.calls
        ):
            self._opened_at = now
            self._reset()
            self._move(OPEN)

    def _reset(self) -> None:
        self._window.clear()
        self._streak = 0

    def describe(self) -> dict[str, object]:
        return {"state": self.state, "transitions": {f"{a}->{b}": n for (a, b), n in self.transitions.items()}}


class BreakerBoard:
    """All breakers of one gateway, by name (deployment:<id>, callout:<host:port>, redis).
    `clock` (seconds, monotonic) times every breaker's window and cool-down."""

    def __init__(self, settings: BreakerSettings | None = None, listener: Listener | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or BreakerSettings()
        self._listener = listener
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = CircuitBreaker(name, self.settings, self._clock, self._listener)
        return breaker

    def all(self) -> list[CircuitBreaker]:
        return list(self._breakers.values())
