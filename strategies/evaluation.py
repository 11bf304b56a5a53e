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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import tradeoff
from .base import Deployment, Outcome, RoutingRequest, RoutingStrategy, TrainingExample
from .learned import LearnedStrategy, example_matrices
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


def _progress(enabled: bool) -> Callable[[str], None]:
    """Stage lines on stderr when it is a terminal (a 5-fold run takes minutes), else nothing."""
    if not enabled:
        return lambda message: None
    began = time.monotonic()
    return lambda message: print(f"[{time.monotonic() - began:6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class _Run:
    """One strategy (or operating point) over the rows it routed: realised perf and cost per
    row, and for learned ones the realised (perf, cost) at each step of the lam sweep."""

    name: str
    perf: dict[int, float] = field(default_factory=dict)
    cost: dict[int, float] = field(default_factory=dict)
    sweep_perf: dict[int, np.ndarray] = field(default_factory=dict)  # row -> perf per lam step
    sweep_cost: dict[int, np.ndarray] = field(default_factory=dict)


def _points(strategy: RoutingStrategy) -> list[str]:
    """The operating points a strategy chose in fit (route-eval scores each)."""
    points = getattr(strategy, "points", None)
    return [p for p in getattr(strategy, "OPERATING_POINTS", ()) if isinstance(points, dict) and p in points]


def _route_fold(
    train: Sequence[TrainingExample],
    test: Sequence[TrainingExample],
    test_rows: Sequence[int],
    registry: StrategyRegistry,
    names: Sequence[str],
    options: Mapping[str, Mapping[str, Any]],
    online: bool,
    runs: dict[str, _Run],
    say: Callable[[str], None],
) -> None:
    deployments = deployments_for(train)
    models = [d.model for d in deployments]
    perf, cost = _test_matrices(models, test)
    col = {m: j for j, m in enumerate(models)}
    _, _, tr_perf, tr_cost = example_matrices(train)
    scale = float(tr_perf.mean()) / max(float(tr_cost.mean()), 1e-12)  # lam steps are unit-free
    lams = np.asarray(tradeoff.LAMBDA_STEPS) * scale
    rows = np.arange(len(test))
    for name in names:
        began = time.monotonic()
        say(f"{name}: fitting on {len(train)} rows")
        strategy = registry.create(name, **dict(options.get(name, {})))
        strategy.fit(train)
        variants = [(name, None)] + [(f"{name}@{p}", p) for p in _points(strategy) if p != getattr(strategy, "operating_point", None)]
        for label, point in variants:
            if point is not None:
                strategy.use_operating_point(point)  # type: ignore[attr-defined]
            run = runs.setdefault(label, _Run(label))
            for i, ex in enumerate(test):
                request = RoutingRequest(request_id=f"eval-{test_rows[i]}", model="auto", query=ex.query)
                decision = strategy.choose(request, deployments)
                j = col[decision.ranked[0].model]
                run.perf[test_rows[i]], run.cost[test_rows[i]] = float(perf[i, j]), float(cost[i, j])
                if online:
                    outcome = Outcome(request, decision, decision.ranked[0], True, 0.0, cost=float(cost[i, j]))
                    strategy.feedback(outcome, float(perf[i, j]))
        if isinstance(strategy, LearnedStrategy) and not online:
            # the frontier: the same predictions, routed at every step of the trade-off knob
            pred = [strategy.predict(ex.query) for ex in test]
            cols = [col[m] for m in strategy.models]
            pp = np.zeros((len(test), len(models)))
            pc = np.zeros_like(pp)
            pp[:, cols] = np.array([p[1][: len(cols)] for p in pred])
            pc[:, cols] = np.array([p[2][: len(cols)] for p in pred])
            chosen = np.stack([tradeoff.pick(pp, pc, lam, 0.0, None) for lam in lams], axis=1)  # rows x steps
            run = runs[name]
            for i in rows:
                run.sweep_perf[test_rows[i]] = perf[i, chosen[i]]
                run.sweep_cost[test_rows[i]] = cost[i, chosen[i]]
        say(f"{name}: routed {len(test)} rows in {time.monotonic() - began:.1f}s")
    models_, _, tr_perf, tr_cost = example_matrices(train)
    best = int(np.argmax(tr_perf.mean(axis=0)))
    cheap = int(np.argmin(tr_cost.mean(axis=0)))
    oracle = _oracle(perf, cost)
    refs = {"best-single-model": perf[:, best], "cheapest": perf[:, cheap], "oracle": perf[rows, oracle]}
    ref_cost = {"best-single-model": cost[:, best], "cheapest": cost[:, cheap], "oracle": cost[rows, oracle]}
    for ref in refs:
        run = runs.setdefault(f"reference:{ref}", _Run(ref))
        for i in rows:
            run.perf[test_rows[i]], run.cost[test_rows[i]] = float(refs[ref][i]), float(ref_cost[ref][i])
    for j, m in enumerate(models):  # every single model, for the plot and the frontier of singles
        run = runs.setdefault(f"model:{m}", _Run(m))
        for i in rows:
            run.perf[test_rows[i]], run.cost[test_rows[i]] = float(perf[i, j]), float(cost[i, j])


def evaluate(
    train: Sequence[TrainingExample],
    test: Sequence[TrainingExample],
    registry: StrategyRegistry,
    strategies: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    online: bool = False,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Fit each strategy on `train`, route `test`; one row per strategy (and operating point)
    plus the references. `online=True` also feeds each test answer's performance back
    (progressive validation)."""
    runs: dict[str, _Run] = {}
    names = list(strategies if strategies is not None else registry.names())
    _route_fold(train, test, range(len(test)), registry, names, options or {}, online, runs, _progress(progress))
    return _report(runs, len(test), bootstrap, bootstrap_seed)


def cross_validate(
    examples: Sequence[TrainingExample],
    folds: int = 5,
    seed: int = 0,
    registry: StrategyRegistry | None = None,
    strategies: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    online: bool = False,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """k-fold CV: every row is routed once, by strategies fitted without its fold (any tuning,
    feature fitting and calibration happen inside the training folds); rows pooled."""
    if folds < 2 or folds > len(examples):
        raise DataError(f"folds must be in 2..{len(examples)}, got {folds}")
    registry = registry or StrategyRegistry.with_builtins()
    names = list(strategies if strategies is not None else registry.names())
    say = _progress(progress)
    runs: dict[str, _Run] = {}
    per_fold: dict[str, list[float]] = {}
    for k, held in enumerate(kfold(len(examples), folds, seed)):
        held_set = set(held.tolist())
        train = [ex for i, ex in enumerate(examples) if i not in held_set]
        test = [examples[i] for i in held]
        fold_say = (lambda message, k=k: say(f"fold {k + 1}/{folds}: {message}"))
        _route_fold(train, test, held.tolist(), registry, names, options or {}, online, runs, fold_say)
        for key, run in runs.items():
            per_fold.setdefault(key, []).append(float(np.mean([run.perf[i] for i in held.tolist()])))
    say(f"bootstrap ({bootstrap} resamples of {len(examples)} queries)")
    rows = _report(runs, len(examples), bootstrap, bootstrap_seed)
    for row in rows:
        if row["_key"] in per_fold:
            row["performance_fold_std"] = float(np.std(per_fold[row["_key"]]))
        row["folds"] = folds
        row["seed"] = seed
    return rows


def paired_bootstrap(a_perf: np.ndarray, a_cost: np.ndarray, b_perf: np.ndarray, b_cost: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """95% percentile intervals of (quality a - quality b) and (cost a / cost b), resampling
    query indices with replacement; a and b see the same resample (paired)."""
    n = len(a_perf)
    rng = np.random.default_rng(seed)
    d_perf, ratio = [], []
    for start in range(0, resamples, 200):
        idx = rng.integers(0, n, size=(min(200, resamples - start), n))
        d_perf.append((a_perf[idx] - b_perf[idx]).mean(axis=1))
        ratio.append(a_cost[idx].mean(axis=1) / np.maximum(b_cost[idx].mean(axis=1), 1e-12))
    dp, cr = np.concatenate(d_perf), np.concatenate(ratio)
    return {
        "d_performance": float(a_perf.mean() - b_perf.mean()),
        "d_performance_ci": [float(np.percentile(dp, 2.5)), float(np.percentile(dp, 97.5))],
        "cost_ratio": float(a_cost.mean() / max(b_cost.mean(), 1e-12)),
        "cost_ratio_ci": [float(np.percentile(cr, 2.5)), float(np.percentile(cr, 97.5))],
    }


def verdict(ci: Mapping[str, Any]) -> str:
    """What a row may claim against the best single model, given its intervals."""
    lo, hi = ci["d_performance_ci"]
    cheaper = ci["cost_ratio_ci"][1] < 1.0
    at_most = ci["cost_ratio_ci"][1] <= 1.0 or ci["cost_ratio"] <= 1.0
    if lo > 0 and at_most:
        return "better quality at <= its cost"
    if lo > 0:
        return "better quality, more cost"
    if hi < 0 and not cheaper:
        return "worse"
    if hi < 0:
        return "cheaper, lower quality"
    if cheaper:
        return "same quality (within the interval), cheaper"
    if ci["cost_ratio_ci"][0] > 1.0:
        return "same quality (within the interval), costlier"
    return "within the noise"


def frontier(sweep_perf: np.ndarray, sweep_cost: np.ndarray, lo: float, hi: float) -> dict[str, Any]:
    """The (cost, quality) curve of a lam sweep (pooled over rows), its Pareto points and the
    area under them over the cost range [lo, hi] (the single models' range), normalised by
    that range: the mean quality an operator gets over budgets from the cheapest to the most
    expensive model (curve held flat beyond its ends)."""
    q, c = sweep_perf.mean(axis=0), sweep_cost.mean(axis=0)
    order = np.argsort(c, kind="stable")
    pareto: list[tuple[float, float]] = []
    for i in order:
        if not pareto or q[i] > pareto[-1][1] + 1e-12:
            pareto.append((float(c[i]), float(q[i])))
    xs = np.linspace(lo, hi, 512)
    px, py = np.array([p[0] for p in pareto]), np.array([p[1] for p in pareto])
    ys = np.interp(xs, px, py, left=py[0], right=py[-1])
    ys = np.where(xs < px[0], 0.0, ys)  # below its cheapest point it cannot be run: no quality
    area = float(np.trapezoid(ys, xs) / max(hi - lo, 1e-12))
    return {"curve": [[float(ci), float(qi)] for ci, qi in zip(c, q)], "pareto": [list(p) for p in pareto], "auc": area}


def crossing(pareto: Sequence[Sequence[float]], quality: float) -> float | None:
    """The lowest cost at which the (interpolated) Pareto curve reaches `quality`."""
    for (c0, q0), (c1, q1) in zip([pareto[0], *pareto], pareto):
        if q1 >= quality:
            if q0 >= quality or q1 == q0:
                return float(c1 if q0 < quality else c0)
            return float(c0 + (quality - q0) / (q1 - q0) * (c1 - c0))
    return None


def _report(runs: Mapping[str, _Run], n: int, resamples: int, seed: int) -> list[dict[str, Any]]:
    def arrays(run: _Run) -> tuple[np.ndarray, np.ndarray]:
        keys = sorted(run.perf)
        return np.array([run.perf[k] for k in keys]), np.array([run.cost[k] for k in keys])

    best_p, best_c = arrays(runs["reference:best-single-model"])
    singles = [arrays(r) for k, r in runs.items() if k.startswith("model:")]
    lo, hi = min(float(c.mean()) for _, c in singles), max(float(c.mean()) for _, c in singles)
    best_q = float(best_p.mean())
    out: list[dict[str, Any]] = []
    for key, run in runs.items():
        if key.startswith("model:"):
            continue
        p, c = arrays(run)
        ref = key.startswith("reference:")
        row: dict[str, Any] = {"strategy": run.name, "kind": "reference" if ref else "strategy", "_key": key, "performance": float(p.mean()), "cost": float(c.mean())}
        if not ref:
            row.update(paired_bootstrap(p, c, best_p, best_c, resamples, seed))
            row["verdict"] = verdict(row)
            if run.sweep_perf:
                keys = sorted(run.sweep_perf)
                f = frontier(np.array([run.sweep_perf[k] for k in keys]), np.array([run.sweep_cost[k] for k in keys]), lo, hi)
                cross = crossing(f["pareto"], best_q)
                row["frontier"] = f
                row["frontier_crosses_best_at_cost"] = cross
        out.append(row)
    out.append({"strategy": "random", "kind": "reference", "_key": "reference:random",
                "performance": float(np.mean([s[0].mean() for s in singles])), "cost": float(np.mean([s[1].mean() for s in singles]))})
    out.append({"strategy": "single models", "kind": "models", "_key": "models",
                "models": {r.name: {"performance": float(arrays(r)[0].mean()), "cost": float(arrays(r)[1].mean())} for k, r in runs.items() if k.startswith("model:")}})
    for row in out:
        if row["kind"] == "reference" and row["strategy"] in ("best-single-model", "cheapest"):
            row["model"] = _model_of(runs, row["_key"])
    return _mark(out)


def _model_of(runs: Mapping[str, _Run], key: str) -> str:
    """The single model a reference row is (when it was the same one in every fold)."""
    ref = runs[key]
    for k, r in runs.items():
        if k.startswith("model:") and r.perf == ref.perf and r.cost == ref.cost:
            return r.name
    return "(differs by fold)"


def _mark(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flag strategies that beat the best single model's performance at no more cost (point
    estimates; `verdict` says whether the bootstrap interval supports it)."""
    ref = next((r for r in rows if r["strategy"] == "best-single-model"), None)
    for r in rows:
        if r["kind"] == "strategy" and ref is not None:
            r["beats_best_single"] = bool(r["performance"] > ref["performance"] and r["cost"] <= ref["cost"])
    return rows


def public(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def format_table(rows: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    best = next(r for r in rows if r["strategy"] == "best-single-model")
    head = ["strategy", "quality", "cost", "Δquality [95% CI]", "cost / best [95% CI]", "frontier AUC", "reaches best at cost", "verdict"]
    body = []
    for r in rows:
        if r["kind"] == "models":
            continue
        if r["kind"] == "reference":
            name = f"*{r['strategy']}*" + (f" ({r['model']})" if r.get("model") else "")
            body.append([name, f"{r['performance']:.4f}", f"{r['cost']:.3f}", "", "", "", "", ""])
            continue
        dq = f"{r['d_performance']:+.4f} [{r['d_performance_ci'][0]:+.4f}, {r['d_performance_ci'][1]:+.4f}]"
        cr = f"{r['cost_ratio']:.2f} [{r['cost_ratio_ci'][0]:.2f}, {r['cost_ratio_ci'][1]:.2f}]"
        f = r.get("frontier")
        cross = r.get("frontier_crosses_best_at_cost")
        reach = "" if f is None else ("never" if cross is None else f"{cross:.3f} ({cross / best['cost']:.0%})")
        body.append([r["strategy"], f"{r['performance']:.4f}", f"{r['cost']:.3f}", dq, cr, "" if f is None else f"{f['auc']:.4f}", reach, r["verdict"]])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] + ["---:"] * 6 + ["---"]) + " |"]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([fmt(head), "-" * (sum(widths) + 2 * len(widths)), *(fmt(b) for b in body)])


def plot(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str) -> None:
    """The frontier of every learned strategy beside the single models (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DataError("--plot needs matplotlib: .venv/bin/pip install -r requirements-bench.lock (or ./dev bench once)") from None
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    models = next(r for r in rows if r["kind"] == "models")["models"]
    for name, m in models.items():
        ax.scatter(m["cost"], m["performance"], color="grey", s=25, zorder=3)
        ax.annotate(name, (m["cost"], m["performance"]), fontsize=7, color="grey", xytext=(3, 3), textcoords="offset points")
    for r in rows:
        if r["kind"] == "strategy" and r.get("frontier"):
            pts = np.array(r["frontier"]["pareto"])
            ax.plot(pts[:, 0], pts[:, 1], marker=".", ms=3, lw=1.4, label=f"{r['strategy']} (AUC {r['frontier']['auc']:.3f})")
    for r in rows:
        if r["kind"] == "strategy" and "@" in r["strategy"] or r["strategy"] == "quality_predictor":
            ax.scatter(r["cost"], r["performance"], marker="*", s=120, zorder=4, edgecolor="black", label=f"{r['strategy']} operating point")
        if r["strategy"] == "oracle":
            ax.scatter(r["cost"], r["performance"], marker="x", color="black", s=50, zorder=4, label="oracle (per-query best)")
    best = next(r for r in rows if r["strategy"] == "best-single-model")
    ax.axhline(best["performance"], color="black", lw=0.6, ls="--")
    ax.axvline(best["cost"], color="black", lw=0.6, ls=":")
    ax.set_xlabel("mean cost per query (data set units)")
    ax.set_ylabel("mean quality (out of fold)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="routeiq route-eval", description="Evaluate routing strategies offline: quality, cost, the cost-quality frontier and paired bootstrap intervals against the best single model.")
    parser.add_argument("--train", help="training jsonl (with --test)")
    parser.add_argument("--test", help="test jsonl (with --train)")
    parser.add_argument("--data", help="all rows, cross-validated (with --folds)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment seed")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples (over queries)")
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    parser.add_argument("--strategies", help="comma-separated strategy names (default: all registered)")
    parser.add_argument("--online", action="store_true", help="feed test outcomes back to the strategies")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--plot", metavar="PNG", help="write the frontier plot here (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines (default when stderr is not a terminal)")
    parser.add_argument("--progress", action="store_true", help="progress lines on stderr even when it is not a terminal")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    registry = StrategyRegistry.with_builtins()
    names = [n.strip() for n in args.strategies.split(",") if n.strip()] if args.strategies else None
    if args.data and not 2 <= args.folds:
        parser.error("--folds must be at least 2")
    if args.bootstrap < 100:
        parser.error("--bootstrap must be at least 100")
    progress = (sys.stderr.isatty() or args.progress) and not args.quiet
    try:
        for n in names or []:
            registry.get(n)
        if args.plot:
            plot_check()
        if args.data and not (args.train or args.test):
            rows = cross_validate(load_examples(args.data), args.folds, args.seed, registry, names, online=args.online, bootstrap=args.bootstrap, bootstrap_seed=args.bootstrap_seed, progress=progress)
            title = f"{Path(args.data).name}: {args.folds}-fold CV, seed {args.seed}"
        elif args.train and args.test and not args.data:
            rows = evaluate(load_examples(args.train), load_examples(args.test), registry, names, online=args.online, bootstrap=args.bootstrap, bootstrap_seed=args.bootstrap_seed, progress=progress)
            title = f"trained on {Path(args.train).name}, scored on {Path(args.test).name}"
        else:
            parser.error("give either --train and --test, or --data [--folds N]")
        if args.plot:
            plot(rows, args.plot, title)
    except (OSError, DataError, UnknownStrategyError) as exc:
        print(f"route-eval: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(public(rows), indent=2) if args.json else format_table(rows, args.markdown))
    if args.plot:
        print(f"frontier plot written to {args.plot}", file=sys.stderr)
    return 0


def plot_check() -> None:
    """Fail before minutes of training if the plot cannot be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise DataError("--plot needs matplotlib: .venv/bin/pip install -r requirements-bench.lock (or ./dev bench once)")
