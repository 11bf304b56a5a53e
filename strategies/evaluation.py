"""Offline evaluation of routing strategies on a per-query routing data set.

Data: jsonl rows {q_id, query, gold, results: [{model, performance, cost}]} (see
shared/data/routing/README.md). Each strategy is fitted on the training rows and asked to
route every test query among one Deployment per data-set model; it is scored by the test
performance and cost of its first choice. Reference rows: best-single-model and cheapest
(chosen on TRAIN, scored on test), random (expected value of a uniform pick) and oracle
(per-query best, ties to the cheaper).

CLI (wired as `routeiq route-eval`):
  route-eval --train TRAIN.jsonl --test TEST.jsonl [--json]
  route-eval --data ALL.jsonl --folds 5 [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .base import Deployment, Outcome, RoutingRequest, TrainingExample
from .learned import example_matrices
from .registry import StrategyRegistry, UnknownStrategyError
from .tradeoff import kfold

REFERENCES = ("best-single-model", "cheapest", "random", "oracle")


class DataError(ValueError):
    pass


def load_examples(path: str | Path) -> list[TrainingExample]:
    examples = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                results = {str(r["model"]): (float(r["performance"]), float(r["cost"])) for r in row["results"]}
                examples.append(TrainingExample(query=str(row["query"]), results=results))
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{path}:{lineno}: not a routing row ({type(exc).__name__}: {exc})") from exc
    if not examples:
        raise DataError(f"{path}: no rows")
    return examples


def deployments_for(train: Sequence[TrainingExample]) -> list[Deployment]:
    """One deployment per data-set model, priced and rated by its training means."""
    models, _, perf, cost = example_matrices(train)
    return [
        Deployment(id=m, model=m, provider_model=m, cost_per_1k_tokens=float(c), quality=float(np.clip(p, 0.0, 1.0)))
        for m, p, c in zip(models, perf.mean(axis=0), cost.mean(axis=0))
    ]


def _test_matrices(models: Sequence[str], test: Sequence[TrainingExample]) -> tuple[np.ndarray, np.ndarray]:
    perf = np.array([[ex.results.get(m, (np.nan, np.nan))[0] for m in models] for ex in test], dtype=float)
    cost = np.array([[ex.results.get(m, (np.nan, np.nan))[1] for m in models] for ex in test], dtype=float)
    if np.isnan(perf).any() or np.isnan(cost).any():
        raise DataError("every test row must have a result for every training model")
    return perf, cost


def reference_rows(train: Sequence[TrainingExample], test: Sequence[TrainingExample]) -> list[dict[str, Any]]:
    models, _, tr_perf, tr_cost = example_matrices(train)
    perf, cost = _test_matrices(models, test)
    best = int(np.argmax(tr_perf.mean(axis=0)))
    cheap = int(np.argmin(tr_cost.mean(axis=0)))
    rows = np.arange(len(test))
    oracle = _oracle(perf, cost)
    return [
        {"strategy": "best-single-model", "kind": "reference", "model": models[best],
         "performance": float(perf[:, best].mean()), "cost": float(cost[:, best].mean())},
        {"strategy": "cheapest", "kind": "reference", "model": models[cheap],
         "performance": float(perf[:, cheap].mean()), "cost": float(cost[:, cheap].mean())},
        {"strategy": "random", "kind": "reference", "performance": float(perf.mean()), "cost": float(cost.mean())},
        {"strategy": "oracle", "kind": "reference",
         "performance": float(perf[rows, oracle].mean()), "cost": float(cost[rows, oracle].mean())},
    ]


def _oracle(perf: np.ndarray, cost: np.ndarray) -> np.ndarray:
    top = perf >= perf.max(axis=1, keepdims=True) - 1e-12
    return np.where(top, cost, np.inf).argmin(axis=1)


def evaluate(
    train: Sequence[TrainingExample],
    test: Sequence[TrainingExample],
    registry: StrategyRegistry,
    strategies: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    online: bool = False,
) -> list[dict[str, Any]]:
    """Fit each strategy on `train`, route `test`; one row per strategy plus the references.
    `online=True` also feeds each test answer's performance back (progressive validation)."""
    deployments = deployments_for(train)
    models = [d.model for d in deployments]
    perf, cost = _test_matrices(models, test)
    col = {m: j for j, m in enumerate(models)}
    out: list[dict[str, Any]] = []
    for name in strategies or registry.names():
        strategy = registry.create(name, **dict((options or {}).get(name, {})))
        strategy.fit(train)
        got_p, got_c = [], []
        for i, ex in enumerate(test):
            request = RoutingRequest(request_id=f"eval-{i}", model="auto", query=ex.query)
            decision = strategy.choose(request, deployments)
            j = col[decision.ranked[0].model]
            got_p.append(perf[i, j])
            got_c.append(cost[i, j])
            if online:
                outcome = Outcome(request, decision, decision.ranked[0], True, 0.0, cost=float(cost[i, j]))
                strategy.feedback(outcome, float(perf[i, j]))
        out.append({"strategy": name, "kind": "strategy", "performance": float(np.mean(got_p)), "cost": float(np.mean(got_c))})
    return out + reference_rows(train, test)


def cross_validate(
    examples: Sequence[TrainingExample],
    folds: int = 5,
    seed: int = 0,
    registry: StrategyRegistry | None = None,
    strategies: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    online: bool = False,
) -> list[dict[str, Any]]:
    """k-fold CV; per-row means over folds weighted by fold size (= pooled over all rows)."""
    if folds < 2 or folds > len(examples):
        raise DataError(f"folds must be in 2..{len(examples)}, got {folds}")
    registry = registry or StrategyRegistry.with_builtins()
    sums: dict[str, dict[str, Any]] = {}
    per_fold: dict[str, list[float]] = {}
    for held in kfold(len(examples), folds, seed):
        held_set = set(held.tolist())
        train = [ex for i, ex in enumerate(examples) if i not in held_set]
        test = [examples[i] for i in held]
        for row in evaluate(train, test, registry, strategies, options, online):
            key = f'{row["kind"]}:{row["strategy"]}'  # the reference "cheapest" shares a strategy's name
            acc = sums.setdefault(key, {"strategy": row["strategy"], "kind": row["kind"], "performance": 0.0, "cost": 0.0})
            acc["performance"] += row["performance"] * len(test)
            acc["cost"] += row["cost"] * len(test)
            per_fold.setdefault(key, []).append(row["performance"])
    result = []
    for key, acc in sums.items():
        acc["performance"] /= len(examples)
        acc["cost"] /= len(examples)
        acc["performance_fold_std"] = float(np.std(per_fold[key]))
        acc["folds"] = folds
        acc["seed"] = seed
        result.append(acc)
    return _mark(result)


def _mark(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flag strategies that beat the best single model's performance at no more cost."""
    ref = next((r for r in rows if r["strategy"] == "best-single-model"), None)
    for r in rows:
        if r["kind"] == "strategy" and ref is not None:
            r["beats_best_single"] = bool(r["performance"] > ref["performance"] and r["cost"] <= ref["cost"])
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"{'strategy':<24} {'performance':>11} {'cost':>9}  note", "-" * 60]
    for r in rows:
        note = r.get("model", "")
        if r.get("beats_best_single"):
            note = "beats best-single-model at <= its cost"
        lines.append(f"{r['strategy']:<24} {r['performance']:>11.4f} {r['cost']:>9.3f}  {note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="routeiq route-eval", description="Evaluate routing strategies offline.")
    parser.add_argument("--train", help="training jsonl (with --test)")
    parser.add_argument("--test", help="test jsonl (with --train)")
    parser.add_argument("--data", help="all rows, cross-validated (with --folds)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment seed")
    parser.add_argument("--strategies", help="comma-separated strategy names (default: all registered)")
    parser.add_argument("--online", action="store_true", help="feed test outcomes back to the strategies")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    registry = StrategyRegistry.with_builtins()
    names = [n.strip() for n in args.strategies.split(",") if n.strip()] if args.strategies else None
    if args.data and not 2 <= args.folds:
        parser.error("--folds must be at least 2")
    try:
        for n in names or []:
            registry.get(n)
        if args.data and not (args.train or args.test):
            rows = cross_validate(load_examples(args.data), args.folds, args.seed, registry, names, online=args.online)
        elif args.train and args.test and not args.data:
            rows = _mark(evaluate(load_examples(args.train), load_examples(args.test), registry, names, online=args.online))
        else:
            parser.error("give either --train and --test, or --data [--folds N]")
    except (OSError, DataError, UnknownStrategyError) as exc:
        print(f"route-eval: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0
