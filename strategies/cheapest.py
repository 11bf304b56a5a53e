"""Cheapest first: learned mean cost per model when `fit` saw every candidate's model, else the
configured cost_per_1k_tokens (the two are in different units, so they are never mixed)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .base import Decision, Deployment, RoutingRequest, RoutingStrategy, TrainingExample
from .learned import example_matrices, match


class Cheapest(RoutingStrategy):
    name = "cheapest"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.learned_cost: dict[str, float] = {}  # model name -> mean cost in the training data

    def fit(self, examples: Sequence[TrainingExample]) -> None:
        models, _, _, cost = example_matrices(examples)
        self.learned_cost = {m: float(c) for m, c in zip(models, cost.mean(axis=0))}

    def costs(self, candidates: Sequence[Deployment]) -> list[float]:
        index = {m: i for i, m in enumerate(self.learned_cost)}
        names = list(self.learned_cost)
        cols = [match(d, index) for d in candidates]
        if self.learned_cost and all(c is not None for c in cols):
            return [self.learned_cost[names[c]] for c in cols if c is not None]
        return [d.cost_per_1k_tokens for d in candidates]

    def choose(self, request: RoutingRequest, candidates: Sequence[Deployment]) -> Decision:
        costs = self.costs(candidates)
        order = sorted(range(len(candidates)), key=lambda i: (costs[i], i))
        return Decision(tuple(candidates[i] for i in order), self.name, {d.id: -c for d, c in zip(candidates, costs)})

    def state(self) -> dict[str, Any]:
        return {"learned_cost": dict(self.learned_cost)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.learned_cost = {str(k): float(v) for k, v in state.get("learned_cost", {}).items()}
