"""Per-plugin, per-callback latency percentiles and fuel, for the admin API and /metrics."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

KEEP = 2048  # most recent samples per callback


@dataclass
class CallbackStats:
    count: int = 0
    fuel_total: int = 0
    latencies_ns: deque[int] = field(default_factory=lambda: deque(maxlen=KEEP))

    def percentile_us(self, q: float) -> float:
        if not self.latencies_ns:
            return 0.0
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


class HookStats:
    def __init__(self) -> None:
        self.callbacks: dict[str, CallbackStats] = {}

    def record(self, callback: str, elapsed_ns: int, fuel: int) -> None:
        stats = self.callbacks.get(callback)
        if stats is None:
            stats = self.callbacks[callback] = CallbackStats()
        stats.count += 1
        stats.fuel_total += fuel
        stats.latencies_ns.append(elapsed_ns)

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
            for name, s in sorted(self.callbacks.items())
        }
