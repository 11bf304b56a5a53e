"""Circuit breakers for deployments and dependencies (callout targets, Redis).

closed -> open after `failure_threshold` failures within `window_s`; open -> half-open
after `cooldown_s`; half-open lets `half_open_probes` calls through: a success closes the
breaker, a failure opens it again for another cool-down. A probe that ends without an
outcome (the caller was cancelled) hands its slot back with `release`, so a breaker can
never stay half-open with every probe slot taken by calls that are gone.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int = 5
    window_s: float = 30.0
    cooldown_s: float = 10.0
    half_open_probes: int = 1


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
Listener = Callable[[str, str, str], None]  # (breaker name, old state, new state)


class CircuitBreaker:
    def __init__(self, name: str, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic, listener: Listener | None = None) -> None:
        self.name = name
        self.settings = settings
        self._clock = clock
        self._listener = listener
        self.state = CLOSED
        self._failures: deque[float] = deque()
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

    def release(self, probe_round: int) -> None:
        """Give back a probe slot taken in half-open period `probe_round` without an
        outcome. A slot from an earlier period is gone already (the state moved on)."""
        if self.state == HALF_OPEN and self.probe_round == probe_round and self._probes > 0:
            self._probes -= 1

    def success(self) -> None:
        if self.state == HALF_OPEN:
            self._failures.clear()
            self._move(CLOSED)

    def failure(self) -> None:
        now = self._clock()
        if self.state == HALF_OPEN:
            self._opened_at = now
            self._move(OPEN)
            return
        if self.state == OPEN:
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.settings.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.settings.failure_threshold:
            self._opened_at = now
            self._failures.clear()
            self._move(OPEN)

    def describe(self) -> dict[str, object]:
        return {"state": self.state, "transitions": {f"{a}->{b}": n for (a, b), n in self.transitions.items()}}


class BreakerBoard:
    """All breakers of one gateway, by name (deployment:<id>, callout:<host:port>, redis)."""

    def __init__(self, settings: BreakerSettings | None = None, listener: Listener | None = None) -> None:
        self.settings = settings or BreakerSettings()
        self._listener = listener
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = CircuitBreaker(name, self.settings, listener=self._listener)
        return breaker

    def all(self) -> list[CircuitBreaker]:
        return list(self._breakers.values())
