"""The console's charts over the last minutes: the gateway's cumulative counters sampled
every `poll_s` (request latency buckets, answers by status class, plugin traps and
denials), turned into rates and percentiles per interval. Per worker, in memory: the
numbers of the worker that answers, as /metrics gives them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from routeiq.dispatch.hook_stats import BUCKETS_S, LatencyHistogram
from routeiq.gateway.plugin_set import PluginSet
from routeiq.services.audit import AuditLog

KEEP_S = 15 * 60


@dataclass(frozen=True)
class Sample:
    at: float  # wall clock (the browser shows it in the viewer's time zone)
    requests: int
    buckets: tuple[int, ...]  # cumulative counts per bound of BUCKETS_S
    outcomes: dict[str, int]
    traps: dict[str, int] = field(default_factory=dict)
    denials: dict[str, int] = field(default_factory=dict)


def percentile_ms(deltas: list[int], total: int, q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the q-th request of an interval."""
    if total <= 0:
        return None
    wanted = q * total
    for bound, count in zip(BUCKETS_S, deltas):
        if count >= wanted:
            return bound * 1000
    return None  # above the largest bound: shown as "> 1 s"


class LiveSeries:
    def __init__(
        self,
        latency: LatencyHistogram,
        outcomes: Counter[str],
        plugins: PluginSet,
        audit: AuditLog,
        poll_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.latency = latency
        self.outcomes = outcomes
        self.plugins = plugins
        self.audit = audit
        self.poll_s = poll_s
        self._clock = clock
        self._samples: deque[Sample] = deque(maxlen=max(2, int(KEEP_S / poll_s) + 1))
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        denials: Counter[str] = Counter()
        for (plugin, _call, _reason), count in self.audit.counts.items():
            denials[plugin] += count
        self._samples.append(
            Sample(
                at=self._clock(),
                requests=self.latency.total,
                buckets=tuple(self.latency.counts),
                outcomes=dict(self.outcomes),
                traps={p.spec.name: p.stats.traps for p in self.plugins.all()},
                denials=dict(denials),
            )
        )

    def points(self) -> list[dict[str, Any]]:
        """One point per interval: requests/s, share of 5xx answers, p50/p99 (ms), traps and
        denials per plugin in that interval."""
        samples = list(self._samples)
        out = []
        for before, after in zip(samples, samples[1:]):
            span = max(after.at - before.at, 1e-6)
            requests = after.requests - before.requests
            deltas = [a - b for a, b in zip(after.buckets, before.buckets)]
            answered = sum(after.outcomes.values()) - sum(before.outcomes.values())
            errors = after.outcomes.get("5xx", 0) - before.outcomes.get("5xx", 0)
            out.append(
                {
                    "at": after.at,
                    "rps": requests / span,
                    "error_rate": errors / answered if answered > 0 else 0.0,
                    "p50_ms": percentile_ms(deltas, requests, 0.5),
                    "p99_ms": percentile_ms(deltas, requests, 0.99),
                    "traps": {n: c - before.traps.get(n, 0) for n, c in after.traps.items()},
                    "denials": {n: c - before.denials.get(n, 0) for n, c in after.denials.items()},
                }
            )
        return out

    def start(self) -> None:
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            self.sample()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
