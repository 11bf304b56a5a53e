"""Smooth weighted round robin (nginx's algorithm) over Deployment.weight.

Each call adds every candidate's weight to its running credit, picks the highest credit and
takes the total back from it: over any window the picks are proportional to the weights and
interleaved (5:1:1 gives a a b a c a a, not a a a a a b c).
"""

from __future__ import annotations

from typing import Any, Sequence

from .base import Decision, Deployment, RoutingRequest, RoutingStrategy


class WeightedRoundRobin(RoutingStrategy):
    name = "weighted_round_robin"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.credit: dict[str, float] = {}  # deployment id -> current credit

    def choose(self, request: RoutingRequest, candidates: Sequence[Deployment]) -> Decision:
        weights = [max(d.weight, 0.0) for d in candidates]
        total = sum(weights)
        if total <= 0:  # all weights zero: plain round robin
            weights, total = [1.0] * len(candidates), float(len(candidates))
        for d, w in zip(candidates, weights):
            self.credit[d.id] = self.credit.get(d.id, 0.0) + w
        order = sorted(range(len(candidates)), key=lambda i: (-self.credit[candidates[i].id], i))
        self.credit[candidates[order[0]].id] -= total
        return Decision(
            tuple(candidates[i] for i in order),
            self.name,
            {d.id: self.credit[d.id] for d in candidates},
        )
