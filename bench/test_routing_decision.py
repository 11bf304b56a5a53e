"""Hot-path cost of one routing decision: `choose()` over 6 candidate deployments.

Every registered strategy is measured; learned ones (and the cost-aware baselines) are first
fitted on the NQ routing data set (shared/data/routing/nq_routing.jsonl beside the repo).
Each call routes the next real query, so feature extraction is included. Target: < 1 ms median.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from routeiq.strategies.base import Outcome, RoutingRequest, RoutingStrategy
from routeiq.strategies.evaluation import deployments_for, load_examples
from routeiq.strategies.registry import StrategyRegistry

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing" / "nq_routing.jsonl"
REGISTRY = StrategyRegistry.with_builtins()
TARGET_S = 1e-3


@pytest.fixture(scope="module")
def examples():  # type: ignore[no-untyped-def]
    if not DATA.exists():
        pytest.skip(f"routing data set not found at {DATA}")
    return load_examples(DATA)


@pytest.mark.benchmark(group="routing-decision")
@pytest.mark.parametrize("name", REGISTRY.names())
def test_choose(benchmark, examples, name: str) -> None:  # type: ignore[no-untyped-def]
    strategy: RoutingStrategy = REGISTRY.create(name)
    strategy.fit(examples)
    candidates = deployments_for(examples)
    assert len(candidates) == 6
    requests = itertools.cycle(
        [RoutingRequest(request_id=f"b{i}", model="auto", query=ex.query) for i, ex in enumerate(examples)]
    )

    def decide() -> str:
        request = next(requests)
        decision = strategy.choose(request, candidates)
        return decision.ranked[0].id

    chosen = benchmark(decide)
    assert chosen in {d.id for d in candidates}
    # the measured decisions must still be usable afterwards (feedback path intact)
    d = strategy.choose(next(requests), candidates)
    strategy.observe(Outcome(next(requests), d, d.ranked[0], True, 0.2))
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        assert stats.stats.median < TARGET_S, f"{name}: median {stats.stats.median * 1e6:.0f} µs >= 1 ms"
