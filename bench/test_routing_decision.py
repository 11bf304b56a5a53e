"""Hot-path cost of one routing decision: `choose()` over the data set's deployments.

Every registered strategy is measured on both shared data sets: NQ (6 deployments, fitted on
all 400 rows) and routerdc (9 deployments; fitted on a fixed 2,000-row subset so the bench
trains in minutes on 2 cores: the decision cost of every strategy but knn does not depend on
the training size, and knn's grows with it, so its routerdc figure is for 2,000 neighbours).
Each call routes the next real query, so feature extraction is included. Target: < 1 ms median.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from routeiq.strategies.base import Outcome, RoutingRequest, RoutingStrategy
from routeiq.strategies.evaluation import deployments_for, load_examples
from routeiq.strategies.registry import StrategyRegistry

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing"
SETS = {"nq": ("nq_routing.jsonl", None, 6), "routerdc": ("routerdc_train.jsonl", 2000, 9)}
REGISTRY = StrategyRegistry.with_builtins()
TARGET_S = 1e-3


@pytest.fixture(scope="module", params=list(SETS))
def data_set(request):  # type: ignore[no-untyped-def]
    name = request.param
    file, subset, n_models = SETS[name]
    examples = load_examples(DATA / file)
    if subset is not None:
        order = np.random.default_rng(0).permutation(len(examples))[:subset]
        examples = [examples[i] for i in order]
    return name, examples, n_models


@pytest.mark.benchmark(group="routing-decision")
@pytest.mark.parametrize("name", REGISTRY.names())
def test_choose(benchmark, data_set, name: str) -> None:  # type: ignore[no-untyped-def]
    _, examples, n_models = data_set
    strategy: RoutingStrategy = REGISTRY.create(name)
    strategy.fit(examples)
    candidates = deployments_for(examples)
    assert len(candidates) == n_models
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
    strategy.feedback(Outcome(next(requests), d, d.ranked[0], True, 0.2), 0.5)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        assert stats.stats.median < TARGET_S, f"{name}: median {stats.stats.median * 1e6:.0f} µs >= 1 ms"
