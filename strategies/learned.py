"""Shared machinery of the learned strategies: data matrices, features, the cost-aware decision
rule, mapping learned model names to live deployments, and state (de)serialisation.

A subclass supplies `_learn(queries, X, P, C) -> params` and `_predict(params, X) -> (perf, cost)`
(one row per query, one column per learned model). Everything else lives here so that every
learned router makes its decision the same way and can be compared on the same footing.
"""

from __future__ import annotations

import itertools
import math
import zlib
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from .base import Decision, Deployment, Outcome, RoutingRequest, RoutingStrategy, TrainingExample
from .features import TextFeaturizer
from . import tradeoff

Params = dict[str, Any]


def example_matrices(examples: Sequence[TrainingExample]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(models, queries, perf, cost); a model missing on a row gets that model's mean there."""
    models = sorted({m for ex in examples for m in ex.results})
    perf = np.full((len(examples), len(models)), np.nan)
    cost = np.full_like(perf, np.nan)
    col = {m: j for j, m in enumerate(models)}
    for i, ex in enumerate(examples):
        for m, (p, c) in ex.results.items():
            perf[i, col[m]], cost[i, col[m]] = float(p), float(c)
    for mat in (perf, cost):
        means = np.nanmean(np.where(np.isnan(mat).all(axis=0), 0.0, mat), axis=0)
        mat[:] = np.where(np.isnan(mat), means, mat)
    return models, [ex.query for ex in examples], perf, cost


def match(deployment: Deployment, index: Mapping[str, int]) -> int | None:
    """A deployment serves a learned model if its group or provider model is that name, or
    the provider model without its litellm provider prefix ("openai/x" serves "x")."""
    for name in (deployment.model, deployment.provider_model, deployment.provider_model.partition("/")[2]):
        if name and name in index:
            return index[name]
    return None


def _encode(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _decode(value: Any) -> Any:
    if not isinstance(value, list) or (value and isinstance(value[0], str)):
        return value
    try:
        return np.asarray(value, dtype=float)
    except ValueError:  # ragged (e.g. calibration curves of different lengths): kept as lists
        return value


class StrategyOptionError(ValueError):
    """A bad `router.strategy_options` entry; `field` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _number(options: Mapping[str, Any], key: str, lo: float, hi: float, default: float | None, *, open_lo: bool = False) -> float | None:
    value = options.get(key, default)
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > hi or value < lo or (open_lo and value == lo):
        bounds = f"{'(' if open_lo else '['}{lo:g}, {hi:g}]"
        raise StrategyOptionError(key, f"must be a number in {bounds}, got {value!r}")
    return float(value)


def explored(request_id: str, share: float, n: int) -> int | None:
    """The candidate position this request explores, or None: a deterministic `share` of
    request ids (crc32, so every node and a replay agree) goes to a uniform candidate."""
    if share <= 0 or n < 2:
        return None
    h = zlib.crc32(request_id.encode())
    if (h & 0xFFFF) / 0x10000 >= share:
        return None
    return (h >> 16) % n


class LearnedStrategy(RoutingStrategy):
    """Options: lam / bonus (fixed trade-off; default: chosen in `fit` by inner CV), tune (bool),
    inner_folds, seed, and featurizer options dim, char_ngrams, word_bigrams, hand_weight.

    Operator knobs (at most one of the two; both in the training data's quality and cost units):
    `min_quality` q: the cheapest deployment predicted to reach q (none does: the one predicted
    best); `max_cost_per_request` X: the best predicted quality among deployments predicted to
    cost at most X per request (none does: the cheapest). `explore` (0..0.5): the share of
    requests sent to a uniformly chosen candidate, so every deployment keeps getting feedback
    (the exploration floor); `online_rate` (0..1] / `max_shift` bound what feedback can move."""

    learned = True
    # may tuning pin the best single model (bonus=inf)? Not for online learners: feedback
    # could then never change the choice.
    allow_pin: ClassVar[bool] = True
    # hyperparameter grids searched by inner CV in `fit` (option `search` overrides; an option
    # of the same name fixes it). Empty by default: on a few hundred noisy rows, searching more
    # knobs on the same inner folds selected noise and did worse in nested CV.
    search: ClassVar[Mapping[str, Sequence[Any]]] = {}
    # the option names a strategy accepts (None: not checked)
    option_names: ClassVar[frozenset[str] | None] = None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.option_names is not None:
            unknown = sorted(set(options) - self.option_names)
            if unknown:
                raise StrategyOptionError(unknown[0], f"unknown option of strategy {self.name!r}; known: {', '.join(sorted(self.option_names))}")
        self.min_quality = _number(options, "min_quality", 0.0, 1.0, None)
        self.max_cost = _number(options, "max_cost_per_request", 0.0, math.inf, None, open_lo=True)
        if self.min_quality is not None and self.max_cost is not None:
            raise StrategyOptionError("min_quality", "give min_quality or max_cost_per_request, not both")
        self.explore = float(_number(options, "explore", 0.0, 0.5, 0.0) or 0.0)
        self.online_rate = float(_number(options, "online_rate", 0.0, 1.0, 0.05, open_lo=True) or 0.05)
        self.max_shift = float(_number(options, "max_shift", 0.0, 1.0, 0.03) or 0.0)
        self.models: list[str] = []
        self.index: dict[str, int] = {}
        self.featurizer: TextFeaturizer | None = None
        self.params: Params = {}
        self.default: int | None = None  # best single model on the training data
        self.lam = float(options.get("lam", 0.0))
        self.bonus = float(options.get("bonus", 0.0))
        self.tuned: dict[str, float] = {}
        self.chosen: dict[str, Any] = {}  # hyperparameters picked by inner CV

    # -- hooks -------------------------------------------------------------------------------
    def _learn(self, queries: Sequence[str], X: np.ndarray, P: np.ndarray, C: np.ndarray) -> Params:
        raise NotImplementedError

    def _predict(self, params: Params, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _prepare(self, params: Params) -> Params:
        """Derive run-time caches from learned or loaded params (e.g. re-featurised neighbours)."""
        return params

    @classmethod
    def option_error(cls, field: str, reason: str) -> StrategyOptionError:
        return StrategyOptionError(field, reason)

    def _new_featurizer(self) -> TextFeaturizer:
        o = self.options
        return TextFeaturizer(
            dim=int(o.get("dim", 2048)),
            char_ngrams=tuple(o.get("char_ngrams", ())),
            word_bigrams=bool(o.get("word_bigrams", True)),
            hand_weight=float(o.get("hand_weight", 0.1)),
        )

    # -- training ----------------------------------------------------------------------------
    def hyper(self, key: str, default: Any) -> Any:
        """A model hyperparameter: the one chosen by inner CV, else the option, else default."""
        return self.chosen.get(key, self.options.get(key, default))

    def fit(self, examples: Sequence[TrainingExample]) -> None:
        if not examples:
            raise ValueError(f"{self.name}: fit needs at least one example")
        self.models, queries, P, C = example_matrices(examples)
        self.index = {m: j for j, m in enumerate(self.models)}
        self.featurizer = self._new_featurizer().fit(queries)
        X = self.featurizer.transform_many(queries)
        self.default = int(np.argmax(P.mean(axis=0)))
        self.chosen = {}
        fixed = "lam" in self.options or "bonus" in self.options
        folds = int(self.options.get("inner_folds", 4))
        if self.options.get("tune", True) and not fixed and len(queries) >= 2 * folds:
            self._tune(queries, X, P, C, folds)
        self.params = self._prepare(self._learn(queries, X, P, C))

    def _tune(self, queries: Sequence[str], X: np.ndarray, P: np.ndarray, C: np.ndarray, folds: int) -> None:
        """Pick hyperparameters (`search` grid, minus those fixed by options) and the trade-off
        (lam, bonus) together, on out-of-fold predictions of the training rows only."""
        def train_and_predict(train: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            params = self._prepare(self._learn([queries[i] for i in train], X[train], P[train], C[train]))
            return self._predict(params, X[held])

        seed = int(self.options.get("seed", 0))
        repeats = max(1, int(self.options.get("inner_repeats", 3)))
        bonuses = [b for b in tradeoff.BONUS_STEPS if self.allow_pin or math.isfinite(b)]
        tiled_p, tiled_c = np.tile(P, (repeats, 1)), np.tile(C, (repeats, 1))
        search = self.options.get("search", self.search)  # e.g. {"k": [5, 10, 20]}
        grid = {k: list(v) for k, v in search.items() if k not in self.options}
        best: tuple[Any, ...] | None = None
        assert self.default is not None
        for combo in itertools.product(*grid.values()):
            self.chosen = dict(zip(grid, combo))
            # several inner splits, stacked: the choice rests on repeats x n predictions
            oof = [tradeoff.out_of_fold(len(queries), folds, seed + r, train_and_predict, len(self.models)) for r in range(repeats)]
            pp, pc = np.vstack([o[0] for o in oof]), np.vstack([o[1] for o in oof])
            lam, bonus, perf, cost = tradeoff.select(pp, pc, tiled_p, tiled_c, self.default, bonuses=bonuses)
            if best is None or (round(perf, 9), -cost) > (round(best[2], 9), -best[3]):
                best = (lam, bonus, perf, cost, dict(self.chosen))
        assert best is not None
        self.lam, self.bonus, perf, cost, self.chosen = best
        self.tuned = {"lam": self.lam, "bonus": self.bonus, "oof_performance": perf, "oof_cost": cost}

    # -- routing -----------------------------------------------------------------------------
    def predict(self, query: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, predicted performance per learned model, predicted cost per learned model)."""
        if self.featurizer is None:
            raise RuntimeError(f"{self.name}: choose() before fit()/load_state()")
        x = self.featurizer.transform(query)
        perf, cost = self._predict(self.params, x[None, :])
        return x, perf[0], cost[0]

    def _neutral(self, x: np.ndarray, perf: np.ndarray, cost: np.ndarray, known: list[int]) -> tuple[float, float]:
        """Prediction for a deployment of a model never learned: the average matched one."""
        return (float(perf[known].mean()), float(cost[known].mean())) if known else (0.0, 0.0)

    def predict_many(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(predicted performance, predicted cost), one row per query, one column per model."""
        if self.featurizer is None:
            raise RuntimeError(f"{self.name}: predict before fit()/load_state()")
        return self._predict(self.params, self.featurizer.transform_many(queries))

    def choose(self, request: RoutingRequest, candidates: Sequence[Deployment]) -> Decision:
        if self.featurizer is None:
            # not trained (no fit, no artifact): nothing learned, so rank by the configured
            # quality prior, cheaper first on ties, rather than failing every request
            order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].quality, candidates[i].cost_per_1k_tokens, i))
            return Decision(tuple(candidates[i] for i in order), self.name, {d.id: d.quality for d in candidates})
        x, perf, cost = self.predict(request.query)
        cols = [match(d, self.index) for d in candidates]
        known = [c for c in cols if c is not None]
        neutral_perf, neutral_cost = self._neutral(x, perf, cost, known)
        keyed = []
        scores: dict[str, float] = {}  # finite utilities (or predicted quality with a knob), for logs
        for pos, (d, c) in enumerate(zip(candidates, cols)):
            p = float(perf[c]) if c is not None else neutral_perf
            k = float(cost[c]) if c is not None else neutral_cost
            if self.min_quality is not None:
                # reaching q first, cheapest first; then the rest, best predicted first
                reach = p >= self.min_quality - 1e-12
                keyed.append((not reach, k if reach else -p, -p if reach else k, d.cost_per_1k_tokens, pos))
                scores[d.id] = p
                continue
            if self.max_cost is not None:
                within = k <= self.max_cost + 1e-12
                keyed.append((not within, -p if within else k, k, d.cost_per_1k_tokens, pos))
                scores[d.id] = p
                continue
            u = p - self.lam * k
            is_default = c is not None and c == self.default
            if is_default and math.isfinite(self.bonus):
                u += self.bonus
            pinned = is_default and math.isinf(self.bonus)  # tuning found nothing better than it
            scores[d.id] = u
            # best utility first; ties: lower predicted cost, lower configured price, given order
            keyed.append((not pinned, -u, k, d.cost_per_1k_tokens, pos))
        order = sorted(range(len(candidates)), key=lambda i: keyed[i])
        pick = explored(request.request_id, self.explore, len(candidates))
        if pick is not None:
            order.remove(pick)
            order.insert(0, pick)
        return Decision(tuple(candidates[i] for i in order), self.name, scores, x)

    def feedback(self, outcome: Outcome, score: float) -> None:
        """Move the answering model's online correction toward the client's score."""
        if type(self)._learn_online is LearnedStrategy._learn_online:
            return  # learns offline only: no prediction to pay for
        column = match(outcome.deployment, self.index)
        if column is None or self.featurizer is None:
            return
        x: Any = outcome.decision.context
        if not isinstance(x, np.ndarray) or x.shape != (self.featurizer.size,):
            x = self.featurizer.transform(outcome.request.query)
        perf, _ = self._predict(self.params, x[None, :])
        self._learn_online(column, float(perf[0, column]), float(np.clip(score, 0.0, 1.0)))

    def observe(self, outcome: Outcome) -> None:
        if not outcome.success:  # an error is a zero-quality answer
            self.feedback(outcome, 0.0)

    def _learn_online(self, column: int, predicted: float, score: float) -> None:
        """Online update of one model from one score (default: offline only)."""

    # -- persistence -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        if self.featurizer is None:
            return {}
        saved = {k: _encode(v) for k, v in self.params.items() if not k.startswith("_")}
        return {
            "models": self.models,
            "default": self.default,
            "lam": self.lam,
            "bonus": self.bonus if math.isfinite(self.bonus) else "inf",
            "tuned": {k: (v if math.isfinite(v) else "inf") for k, v in self.tuned.items()},
            "chosen": dict(self.chosen),
            "featurizer": self.featurizer.state(),
            "params": saved,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.models = list(state["models"])
        self.index = {m: j for j, m in enumerate(self.models)}
        self.default = state["default"]
        self.lam = float(state["lam"])
        self.bonus = float(state["bonus"])
        self.tuned = {k: float(v) for k, v in state.get("tuned", {}).items()}
        self.chosen = dict(state.get("chosen", {}))
        self.featurizer = TextFeaturizer.from_state(state["featurizer"])
        self.params = self._prepare({k: _decode(v) for k, v in state["params"].items()})
