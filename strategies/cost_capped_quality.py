"""Highest quality whose cost is within `max_cost`; nothing within the cap -> cheapest first.

Quality and cost come from the Deployment (quality prior, cost_per_1k_tokens) unless `fit`
learned every candidate's model (mean performance and mean cost per model), in which case the
cap is in the training data's cost units.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from .base import Decision, Deployment, RoutingRequest, RoutingStrategy, TrainingExample
from .learned import example_matrices, match


class CostCappedQuality(RoutingStrategy):
    name = "cost_capped_quality"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        cap = options.get("max_cost")
        self.max_cost = math.inf if cap is None else float(cap)
        self.stats: dict[str, tuple[float, float]] = {}  # model -> (mean performance, mean cost)

    def fit(self, examples: Sequence[TrainingExample]) -> None:
        models, _, perf, cost = example_matrices(examples)
        self.stats = {m: (float(p), float(c)) for m, p, c in zip(models, perf.mean(axis=0), cost.mean(axis=0))}

    def _quality_cost(self, candidates: Sequence[Deployment]) -> list[tuple[float, float]]:
        names = list(self.stats)
        index = {m: i for i, m in enumerate(names)}
        cols = [match(d, index) for d in candidates]
        if self.stats and all(c is not None for c in cols):
            return [self.stats[names[c]] for c in cols if c is not None]
        return [(d.quality, d.cost_per_1k_tokens) for d in candidates]

    def choose(self, request: RoutingRequest, candidates: Sequence[Deployment]) -> Decision:
        qc = self._quality_cost(candidates)
        within = [i for i, (_, c) in enumerate(qc) if c <= self.max_cost]
        rest = [i for i in range(len(candidates)) if i not in within]
        # within the cap: best quality first (cheaper on ties); then the rest cheapest first
        order = sorted(within, key=lambda i: (-qc[i][0], qc[i][1], i)) + sorted(rest, key=lambda i: (qc[i][1], i))
        scores = {d.id: (q if c <= self.max_cost else -1.0) for d, (q, c) in zip(candidates, qc)}  # -1: over the cap
        return Decision(tuple(candidates[i] for i in order), self.name, scores)

    def state(self) -> dict[str, Any]:
        return {"stats": {m: list(v) for m, v in self.stats.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.stats = {str(m): (float(v[0]), float(v[1])) for m, v in state.get("stats", {}).items()}
