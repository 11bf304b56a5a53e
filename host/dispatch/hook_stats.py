"""Per-plugin, per-callback latency percentiles and fuel, for the admin API and /metrics."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque
from itertools import repeat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routeiq.runtime.vm import GuestFunction

KEEP = 2048  # most recent samples per callback
# Histogram bucket bounds in seconds (Prometheus `le`), from 5 µs to 1 s.
BUCKETS_S = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0)
_BOUNDS_NS = tuple(round(b * 1e9) for b in BUCKETS_S)  # callbacks are timed in integer ns


class LatencyHistogram:
    """Bucket counts; cumulative (as Prometheus wants them) only when exported, so that
    observing, which happens on every callback, is one bisect."""

    def __init__(self) -> None:
        self._per_bucket = [0] * (len(BUCKETS_S) + 1)  # the last one is above every bound
        self.total = 0
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        self.total += 1
        self.sum_s += seconds
        self._per_bucket[bisect_left(BUCKETS_S, seconds)] += 1

    def observe_ns(self, nanoseconds: int) -> None:
        """observe() for integer nanoseconds (the callback path: no float bisect)."""
        self.total += 1
        self.sum_s += nanoseconds * 1e-9
        self._per_bucket[bisect_left(_BOUNDS_NS, nanoseconds)] += 1

    @property
    def counts(self) -> list[int]:
        """Cumulative counts per bound of BUCKETS_S."""
        out, running = [], 0
        for count in self._per_bucket[:-1]:
            running += count
            out.append(running)
        return out

    def buckets(self) -> list[tuple[str, float]]:
        return [(repr(b), c) for b, c in zip(BUCKETS_S, self.counts)] + [("+Inf", self.total)]


FOLD_AT = 1024  # samples a callback's stats hold unfolded at most


class CallbackStats:
    """Count, fuel, recent latencies and histogram of one callback of one plugin.

    The callback path only appends its sample (`pending`; for a core module the guest
    call does it in C, see `attach`); samples are folded into the figures in batches,
    when the batch is full or before the figures are read (HookStats.folded), so each
    callback pays one list append instead of the bookkeeping. Every call is counted and
    timed: nothing is sampled, so the percentiles are over the last KEEP calls."""

    __slots__ = ("pending", "count", "fuel_total", "latencies_ns", "histogram")

    def __init__(self) -> None:
        self.pending: list[tuple[int, int]] = []  # (elapsed ns, fuel used), not yet folded
        self.count = 0
        self.fuel_total = 0
        self.latencies_ns: deque[int] = deque(maxlen=KEEP)
        self.histogram = LatencyHistogram()

    def add(self, elapsed_ns: int, fuel: int) -> None:
        pending = self.pending
        pending.append((elapsed_ns, fuel))
        if len(pending) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        if not self.pending:
            return
        # The list itself stays: a guest call recording into it (attach) holds it.
        elapsed, fuel = zip(*self.pending)
        self.pending.clear()
        # One pass each, in C: this runs for every 1,024 callbacks of the gateway.
        per_bucket = self.histogram._per_bucket
        for bucket, count in Counter(map(bisect_left, repeat(_BOUNDS_NS), elapsed)).items():
            per_bucket[bucket] += count
        self.latencies_ns.extend(elapsed)
        self.histogram.total += len(elapsed)
        self.histogram.sum_s += sum(elapsed) * 1e-9
        self.count += len(elapsed)
        self.fuel_total += sum(fuel)

    def percentile_us(self, q: float) -> float:
        if not self.latencies_ns:
            return 0.0
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


class HookStats:
    def __init__(self) -> None:
        self.callbacks: dict[str, CallbackStats] = {}

    def slot(self, callback: str) -> CallbackStats:
        """The stats `callback` records into (created on first use)."""
        stats = self.callbacks.get(callback)
        if stats is None:
            stats = self.callbacks[callback] = CallbackStats()
        return stats

    def record(self, callback: str, elapsed_ns: int, fuel: int) -> None:
        self.slot(callback).add(elapsed_ns, fuel)

    def attach(self, callback: str, fn: "GuestFunction") -> None:
        """Have the prepared export `fn` record each of its top-level calls into
        `callback`'s stats itself: the time and fuel of the guest call (host calls it
        makes included), taken in C, with no Python around the call."""
        stats = self.slot(callback)
        fn.record_into(stats.pending, stats.fold, FOLD_AT)

    def folded(self) -> dict[str, CallbackStats]:
        """The stats of every callback called so far, all samples folded in: read them
        from here. (A slot `attach` made for a callback not yet called is left out.)"""
        for stats in self.callbacks.values():
            stats.fold()
        return {name: stats for name, stats in self.callbacks.items() if stats.count}

    def describe(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "count": s.count,
                "p50_us": round(s.percentile_us(0.50), 2),
                "p95_us": round(s.percentile_us(0.95), 2),
                "p99_us": round(s.percentile_us(0.99), 2),
                "fuel_total": s.fuel_total,
                "fuel_mean": round(s.fuel_total / s.count, 1) if s.count else 0.0,
            }
            for name, s in sorted(self.folded().items())
        }
