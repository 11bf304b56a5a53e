"""Fastest first by an EWMA of observed latency; deployments never observed go first.

Unobserved deployments are tried before any measured one (so a new deployment gets measured
at once); several unobserved ones are rotated so each gets its first sample. Failures count
as `failure_penalty_s` so a deployment that errors fast is not mistaken for a fast one.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .base import Decision, Deployment, Outcome, RoutingRequest, RoutingStrategy


class LeastLatency(RoutingStrategy):
    name = "least_latency"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.alpha = float(options.get("alpha", 0.3))  # weight of the newest sample
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"least_latency: alpha must be in (0, 1], got {self.alpha}")
        self.failure_penalty_s = float(options.get("failure_penalty_s", 30.0))
        self.ewma: dict[str, float] = {}  # deployment id -> smoothed latency (s)
        self.calls = 0  # rotates the order among unobserved deployments

    def choose(self, request: RoutingRequest, candidates: Sequence[Deployment]) -> Decision:
        n = len(candidates)
        rot = self.calls % n
        self.calls += 1

        def key(i: int) -> tuple[int, float, int]:
            lat = self.ewma.get(candidates[i].id)
            return (0, 0.0, (i - rot) % n) if lat is None else (1, lat, i)

        order = sorted(range(n), key=key)
        scores = {d.id: -self.ewma[d.id] for d in candidates if d.id in self.ewma}
        return Decision(tuple(candidates[i] for i in order), self.name, scores)

    def observe(self, outcome: Outcome) -> None:
        sample = outcome.latency_s if outcome.success else max(outcome.latency_s, self.failure_penalty_s)
        key = outcome.deployment.id
        prev = self.ewma.get(key)
        self.ewma[key] = sample if prev is None else self.alpha * sample + (1 - self.alpha) * prev

    def state(self) -> dict[str, Any]:
        # Not trained offline, but its EWMAs are what it learned: an operator can ship them
        # (PUT /admin/routing/artifact) and GET /admin/routing?state=1 shows them.
        return {"ewma": dict(self.ewma)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.ewma = {str(k): float(v) for k, v in dict(state.get("ewma", {})).items()}
