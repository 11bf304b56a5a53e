"""Routing that pays for itself (issue #19): the calibrated quality predictor on the shared
mixed-domain data set, the operator knobs, bounded online learning, and a trained artifact
served by a real gateway. Trained once per module on a fixed-seed subset (2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from routeiq.app import create_app
from routeiq.config import ConfigError, parse_config
from routeiq.strategies.artifacts import load_artifact, save_artifact
from routeiq.strategies.base import Deployment, Outcome, RoutingRequest
from routeiq.strategies.evaluation import deployments_for, load_examples, paired_bootstrap
from routeiq.strategies.learned import StrategyOptionError, example_matrices
from routeiq.strategies.quality_predictor import QualityPredictor
from routeiq.strategies.registry import StrategyRegistry, create
from routeiq.strategies.tradeoff import kfold

ROUTERDC = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing" / "routerdc_train.jsonl"
SEED = 0


@pytest.fixture(scope="module")
def split() -> dict[str, Any]:
    """2,000 training and 1,000 held-out rows of routerdc (fixed permutation)."""
    examples = load_examples(ROUTERDC)
    order = np.random.default_rng(SEED).permutation(len(examples))
    train = [examples[i] for i in order[:2000]]
    test = [examples[i] for i in order[2000:3000]]
    models, _, P, C = example_matrices(test)
    return {"train": train, "test": test, "models": models, "P": P, "C": C}


@pytest.fixture(scope="module")
def trained(split: dict[str, Any]) -> QualityPredictor:
    s = QualityPredictor(seed=SEED)
    s.fit(split["train"])
    return s


def route(strategy: Any, split: dict[str, Any], deployments: list[Deployment]) -> tuple[np.ndarray, np.ndarray]:
    """Realised (quality, cost) per held-out row of the strategy's first choice."""
    col = {m: j for j, m in enumerate(split["models"])}
    picks = [col[strategy.choose(RoutingRequest(f"t{i}", "auto", ex.query), deployments).ranked[0].model] for i, ex in enumerate(split["test"])]
    rows = np.arange(len(picks))
    return split["P"][rows, picks], split["C"][rows, picks]


def best_single(split: dict[str, Any]) -> int:
    _, _, P, _ = example_matrices(split["train"])
    return int(np.argmax(P.mean(axis=0)))


def test_predictor_beats_the_best_single_model_on_held_out_rows(trained: QualityPredictor, split: dict[str, Any]) -> None:
    deployments = deployments_for(split["train"])
    best = best_single(split)
    assert split["models"][best] == "llama-3.1-nemotron-51b-instruct"
    b_perf, b_cost = split["P"][:, best], split["C"][:, best]
    # default operating point (chosen on the training rows only): more quality, less cost
    perf, cost = route(trained, split, deployments)
    ci = paired_bootstrap(perf, cost, b_perf, b_cost, 1000, SEED)
    assert ci["d_performance_ci"][0] > 0, ci
    assert ci["cost_ratio_ci"][1] < 1.0, ci
    # match_best: about the best model's quality for a fraction of its cost
    trained.use_operating_point("match_best")
    try:
        perf, cost = route(trained, split, deployments)
    finally:
        trained.use_operating_point("max_quality")
    ci = paired_bootstrap(perf, cost, b_perf, b_cost, 1000, SEED)
    assert ci["cost_ratio_ci"][1] < 0.6, ci
    assert ci["d_performance_ci"][1] > 0, ci  # not below the best model beyond the noise


def test_predicted_quality_is_calibrated_on_held_out_rows(trained: QualityPredictor, split: dict[str, Any]) -> None:
    pred, _ = trained.predict_many([ex.query for ex in split["test"]])
    P = split["P"]
    # binned by predicted quality, the realised mean is close to the prediction
    edges = np.quantile(pred, np.linspace(0, 1, 6))
    gaps = []
    for lo, hi in zip(edges, edges[1:]):
        inside = (pred >= lo) & (pred <= hi)
        gaps.append(abs(P[inside].mean() - pred[inside].mean()))
    assert max(gaps) < 0.08, gaps
    # and it ranks: the top fifth of predictions answer far better than the bottom fifth
    assert P[pred >= edges[4]].mean() - P[pred <= edges[1]].mean() > 0.4


def test_quality_target_and_budget_move_along_the_frontier(trained: QualityPredictor, split: dict[str, Any]) -> None:
    deployments = deployments_for(split["train"])
    state = trained.state()
    costs, quals = [], []
    for q in (0.3, 0.5, 0.6, 0.7, 0.8, 0.95):
        s = QualityPredictor(min_quality=q)
        s.load_state(state)
        perf, cost = route(s, split, deployments)
        costs.append(cost.mean())
        quals.append(perf.mean())
    assert all(a <= b + 1e-9 for a, b in zip(costs, costs[1:])), costs  # a higher target never costs less
    assert quals[-1] > quals[0] + 0.1 and costs[-1] > 3 * costs[0], (quals, costs)
    budgets, b_quals = [], []
    for budget in (0.5, 2.0, 5.0, 10.0, 30.0):
        s = QualityPredictor(max_cost_per_request=budget)
        s.load_state(state)
        perf, cost = route(s, split, deployments)
        budgets.append(cost.mean())
        b_quals.append(perf.mean())
        # per request within the budget, or (nothing fits) the cheapest model; predicted cost is
        # a fit on query length, so allow it 5%
        assert np.all((cost <= budget * 1.05) | (cost <= split["C"].min(axis=1) * 1.05)), budget
    assert all(a <= b + 1e-9 for a, b in zip(budgets, budgets[1:])), budgets
    assert b_quals[-1] > b_quals[0] + 0.1, b_quals


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"min_quality": 1.5}, "min_quality"),
        ({"min_quality": "high"}, "min_quality"),
        ({"max_cost_per_request": 0}, "max_cost_per_request"),
        ({"min_quality": 0.5, "max_cost_per_request": 3}, "min_quality"),
        ({"explore": 0.9}, "explore"),
        ({"online_rate": 0}, "online_rate"),
        ({"operating_point": "cheap"}, "operating_point"),
        ({"min_qualty": 0.5}, "min_qualty"),
    ],
)
def test_bad_strategy_options_are_refused_naming_field_and_file(options: dict[str, Any], field: str, tmp_path: Path) -> None:
    with pytest.raises(StrategyOptionError) as err:
        create("quality_predictor", **options)
    assert err.value.field == field
    config = {
        "model_list": [{"model_name": "chat", "litellm_params": {"model": "openai/a", "api_base": "embedded"}}],
        "router": {"strategy": "quality_predictor", "strategy_options": options},
    }
    with pytest.raises(ConfigError) as cerr:
        create_app(parse_config(config, "gw.yaml", tmp_path / "gw.yaml"))
    assert f"gw.yaml: router.strategy_options.{field}:" in str(cerr.value)


def test_knn_and_bandit_take_the_same_knobs() -> None:
    with pytest.raises(StrategyOptionError, match="min_quality"):
        create("knn", min_quality=-0.1)
    with pytest.raises(StrategyOptionError, match="explore"):
        create("contextual_bandit", explore=1)


def changed_share(strategy: Any, queries: list[str], deployments: list[Deployment], before: list[str]) -> float:
    after = [strategy.choose(RoutingRequest(f"h{i}", "auto", q), deployments).ranked[0].model for i, q in enumerate(queries)]
    return float(np.mean([a != b for a, b in zip(after, before)]))


def test_a_burst_of_bad_feedback_moves_a_bounded_share_of_traffic(trained: QualityPredictor, split: dict[str, Any]) -> None:
    deployments = deployments_for(split["train"])
    queries = [ex.query for ex in split["test"][:400]]
    state = trained.state()

    def burst(**options: Any) -> dict[str, Any]:
        s = QualityPredictor(**options)
        s.load_state(state)
        decisions = [s.choose(RoutingRequest(f"h{i}", "auto", q), deployments) for i, q in enumerate(queries)]
        before = [d.ranked[0].model for d in decisions]
        top = max(set(before), key=before.count)  # the model most traffic goes to
        victim = next(d for d in deployments if d.model == top)
        # the traffic a shift of max_shift can move: queries the victim wins by less than it
        margins = [d.scores[victim.id] - max(v for k, v in d.scores.items() if k != victim.id) for d, b in zip(decisions, before) if b == top]
        for i in range(2000):  # 2,000 "this answer was useless" in a row, on varied queries
            q = queries[i % len(queries)]
            d = s.choose(RoutingRequest(f"b{i}", "auto", q), deployments)
            s.feedback(Outcome(RoutingRequest(f"b{i}", "auto", q), d, victim, True, 0.1), 0.0)
        return {
            "changed": changed_share(s, queries, deployments, before),
            "victim_share": before.count(top) / len(before),
            "movable": sum(m < s.max_shift for m in margins) / len(before),
            "bias": float(s.params["bias"][s.index[top]]),
            "max_shift": s.max_shift,
        }

    bounded = burst()
    assert bounded["bias"] == pytest.approx(-bounded["max_shift"])  # held at the clamp
    assert bounded["changed"] <= bounded["movable"] + 1e-9, bounded  # never more than the bound allows
    assert bounded["changed"] < 0.5 * bounded["victim_share"], bounded  # most of its traffic stays
    unbounded = burst(online_rate=1.0, max_shift=1.0)
    assert unbounded["changed"] >= 0.9 * unbounded["victim_share"], unbounded  # without it: all gone
    assert unbounded["changed"] > bounded["changed"] + 0.05, (bounded, unbounded)


def test_exploration_floor_keeps_every_deployment_in_traffic(trained: QualityPredictor, split: dict[str, Any]) -> None:
    deployments = deployments_for(split["train"])
    s = QualityPredictor(explore=0.05)
    s.load_state(trained.state())
    queries = [ex.query for ex in split["test"]]
    picks = [s.choose(RoutingRequest(f"x{i}", "auto", queries[i % len(queries)]), deployments).ranked[0].model for i in range(4000)]
    floor = 0.05 / len(deployments)
    for d in deployments:
        assert picks.count(d.model) / len(picks) > floor / 2, d.model
    # deterministic by request id: another node (or a replay) explores the same requests
    again = [s.choose(RoutingRequest(f"x{i}", "auto", queries[i % len(queries)]), deployments).ranked[0].model for i in range(200)]
    assert again == picks[:200]


def test_route_train_artifact_is_served_with_the_operator_knob(trained: QualityPredictor, split: dict[str, Any], tmp_path: Path, live) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "subset.jsonl"
    lines = [json.loads(line) for line in ROUTERDC.read_text().splitlines()[:400]]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    artifact = tmp_path / "qp.json"
    out = subprocess.run([sys.executable, "-m", "routeiq", "route-train", "--strategy", "quality_predictor", "--data", str(data), "--out", str(artifact), "--option", "dim=1024"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert "trained quality_predictor on 400 examples" in out.stdout and "sha256" in out.stdout
    # the big artifact trained in this module, with a quality target from the config
    big = tmp_path / "big.json"
    save_artifact(trained, big)
    models = split["models"]
    model_list = [{"model_name": "auto-pool", "litellm_params": {"model": f"openai/{m}", "api_base": "embedded"}, "model_info": {"id": m}} for m in models]
    config = {"model_list": model_list, "router": {"strategy": "quality_predictor", "artifact": str(big), "strategy_options": {"min_quality": 0.75}}}
    app = create_app(parse_config(config, "gw.yaml", tmp_path / "gw.yaml"))
    url = live(app)
    expected = load_artifact(big, StrategyRegistry.with_builtins(), overrides={"min_quality": 0.75})
    cheap_first = load_artifact(big, StrategyRegistry.with_builtins())
    served = []
    with openai.OpenAI(base_url=url + "/v1", api_key="sk-client", max_retries=0, timeout=60) as sdk:
        for ex in split["test"][:12]:
            raw = sdk.chat.completions.with_raw_response.create(model="auto-pool", messages=[{"role": "user", "content": ex.query}])
            served.append(raw.headers["x-routeiq-deployment"])
            assert raw.headers["x-routeiq-strategy"] == "quality_predictor"
    cands = [Deployment(m, "auto-pool", provider_model=f"openai/{m}") for m in models]
    want = [expected.choose(RoutingRequest("r", "auto-pool", ex.query), cands).ranked[0].id for ex in split["test"][:12]]
    assert served == want
    # the knob mattered: without it the same artifact routes some of these elsewhere
    assert want != [cheap_first.choose(RoutingRequest("r", "auto-pool", ex.query), cands).ranked[0].id for ex in split["test"][:12]]
    # a changed byte is refused at startup, naming the file
    doc = json.loads(big.read_text())
    doc["state"]["lam"] = 0.5
    big.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"router\.artifact: .*big\.json: sha256 mismatch"):
        create_app(parse_config(config, "gw.yaml", tmp_path / "gw.yaml"))
