"""A calibrated per-model quality predictor: "how likely is model m to answer this query well".

Per model, a logistic regression (soft labels: the 0..1 score of every training answer; all
models fitted jointly with scipy's L-BFGS) over hashed word and character n-grams plus task-family cues (code, maths, multiple
choice, puzzles, passages, length). Its raw probabilities are then calibrated with isotonic
regression fitted on out-of-fold predictions of the training rows, so that a predicted 0.7
means "answers about 70% of such queries right": that is what makes `min_quality: 0.7` and
`predicted quality - lam * cost` mean what they say. Cost per model is a least-squares fit on
query length (the data's cost is tokens x price).

Serving needs numpy only: coefficients, intercepts and the calibration curves (np.interp)
are plain arrays in the artifact. The regularisation C (default 1.0) can be chosen per model by
inner CV (`C_grid`, Brier score), and the two operating points (`operating_point`) are chosen on the same
out-of-fold predictions, never on the rows being scored:

- `max_quality` (default): the lam with the highest quality at no more than the best single
  model's cost;
- `match_best`: the lam with the lowest cost that still reaches the best single model's quality.

Online: feedback moves a per-model correction of the predicted quality by at most
`online_rate` (0.05) x the surprise per answer, clamped to +-`max_shift` (0.03): a burst of
bad feedback can only move a model by `max_shift`, so only the queries it won by less than
that change hands (tests/test_routing_quality.py measures it);
see learned.py for the exploration floor.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import numpy as np

from .base import TrainingExample
from .features import TextFeaturizer
from .learned import LearnedStrategy, Params, example_matrices
from . import tradeoff



def soft_logistic(X: Any, Y: np.ndarray, C: float, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """L2-regularised logistic regression of every column of Y (0..1 soft labels: the
    cross-entropy of the score) at once; scipy's L-BFGS on the joint loss, one sparse
    product per step for all models. Returns (W: models x features, b: models)."""
    from scipy.optimize import minimize

    n, d = X.shape
    m = Y.shape[1]
    XT = X.T.tocsr()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: d * m].reshape(d, m), theta[d * m :]
        Z = X @ W + b
        # log(1 + e^z) - y z, stable for large |z|
        value = float((np.logaddexp(0.0, Z) - Y * Z).sum() + (W * W).sum() / (2 * C))
        G = _sigmoid(Z) - Y
        return value / n, np.concatenate([((XT @ G) + W / C).ravel(), G.sum(axis=0)]) / n

    start = np.zeros(d * m + m)
    mean = np.clip(Y.mean(axis=0), 1e-4, 1 - 1e-4)
    start[d * m :] = np.log(mean / (1 - mean))
    result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    W, b = result.x[: d * m].reshape(d, m), result.x[d * m :]
    return np.ascontiguousarray(W.T), b


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _isotonic(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibration curve (x knots, y knots) mapping a raw probability to the observed score."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    return np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float)


class QualityPredictor(LearnedStrategy):
    name = "quality_predictor"
    allow_pin = False
    option_names: ClassVar[frozenset[str] | None] = frozenset({
        "C", "C_grid", "inner_folds", "seed", "dim", "char_ngrams", "word_bigrams", "hand_weight",
        "operating_point", "lam", "min_quality", "max_cost_per_request",
        "explore", "online_rate", "max_shift", "tune",
    })
    OPERATING_POINTS: ClassVar[tuple[str, ...]] = ("max_quality", "match_best")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        point = options.get("operating_point", "max_quality")
        if point not in self.OPERATING_POINTS:
            raise self.option_error("operating_point", f"must be one of {', '.join(self.OPERATING_POINTS)}, got {point!r}")
        self.operating_point = str(point)
        self.points: dict[str, float] = {}  # operating point -> lam, chosen in fit

    def _new_featurizer(self) -> TextFeaturizer:
        o = self.options
        return TextFeaturizer(
            dim=int(o.get("dim", 8192)),
            char_ngrams=tuple(o.get("char_ngrams", (3, 4))),
            word_bigrams=bool(o.get("word_bigrams", True)),
            hand_weight=float(o.get("hand_weight", 0.5)),
            task_cues=True,
        )

    # -- training ----------------------------------------------------------------------------
    def fit(self, examples: Sequence[TrainingExample]) -> None:
        if not examples:
            raise ValueError(f"{self.name}: fit needs at least one example")
        self.models, queries, P, C = example_matrices(examples)
        self.index = {m: j for j, m in enumerate(self.models)}
        featurizer = self._new_featurizer()
        self.fit_raw(featurizer, featurizer.raw(queries), P, C)

    def fit_raw(self, featurizer: TextFeaturizer, raw: Any, P: np.ndarray, C: np.ndarray) -> None:
        """Fit from precomputed raw features (route-eval computes them once per data set;
        every fitted quantity, idf included, comes from these rows only)."""
        from threadpoolctl import threadpool_limits

        # BLAS threads on vectors this size only contend (measured: 6x slower on 2 busy cores)
        with threadpool_limits(limits=1):
            self._fit_raw(featurizer, raw, P, C)

    def _fit_raw(self, featurizer: TextFeaturizer, raw: Any, P: np.ndarray, C: np.ndarray) -> None:
        n, m = P.shape
        self.featurizer = featurizer.fit_raw(raw)
        X = featurizer.transform_raw(raw)
        self.default = int(np.argmax(P.mean(axis=0)))
        folds = int(self.options.get("inner_folds", 3))
        seed = int(self.options.get("seed", 0))
        # C: fixed (default 1.0; a 3-value inner-CV search picked 1.0 for 8 of 9 models on
        # routerdc at 3x the training time), or searched per model with `C_grid`
        if "C" in self.options:
            grid = [float(self.options["C"])]
        else:
            grid = [float(c) for c in self.options.get("C_grid", (1.0,))]
        # out-of-fold raw probabilities of every training row, per C
        oof = {c: np.zeros((n, m)) for c in grid}
        can_cv = n >= 2 * folds
        if can_cv:
            for held in tradeoff.kfold(n, folds, seed):
                train = np.setdiff1d(np.arange(n), held)
                inner = featurizer_copy(featurizer).fit_raw(raw.rows(train))  # idf of the inner split only
                Xt, Xh = inner.transform_raw(raw.rows(train)), inner.transform_raw(raw.rows(held))
                for c in grid:
                    w, b = soft_logistic(Xt, P[train], c)
                    oof[c][held] = _sigmoid(Xh @ w.T + b)
        chosen_c = [grid[int(np.argmin([((oof[c][:, j] - P[:, j]) ** 2).mean() for c in grid]))] if can_cv else grid[0] for j in range(m)]
        W, B = np.zeros((m, X.shape[1])), np.zeros(m)
        for c in set(chosen_c):
            cols = [j for j in range(m) if chosen_c[j] == c]
            w, b = soft_logistic(X, P[:, cols], c)
            W[cols], B[cols] = w, b
        knots_x, knots_y = [], []
        calibrated = np.zeros((n, m))
        for j in range(m):
            if can_cv:
                kx, ky = _isotonic(oof[chosen_c[j]][:, j], P[:, j])
                calibrated[:, j] = np.interp(oof[chosen_c[j]][:, j], kx, ky)
            else:  # too few rows to calibrate: identity
                kx, ky = np.array([0.0, 1.0]), np.array([0.0, 1.0])
            knots_x.append(kx.tolist())
            knots_y.append(ky.tolist())
        length = np.c_[np.ones(n), np.expm1(raw.hand[:, -3])]  # log_words -> words
        cost_coef = np.linalg.lstsq(length, C, rcond=None)[0]  # (2, M)
        self.chosen = {"C": chosen_c}
        self.params = self._prepare({
            "W": W, "B": B, "knots_x": knots_x, "knots_y": knots_y,
            "cost_coef": cost_coef, "cost_mean": C.mean(axis=0), "bias": np.zeros(m),
        })
        self.points = {}
        if can_cv:
            pred_cost = length @ cost_coef
            self.points = operating_points(calibrated, pred_cost, P, C, self.default)
            self.tuned = {f"lam_{k}": v for k, v in self.points.items()}
        if "lam" not in self.options:
            self.lam = self.points.get(self.operating_point, 0.0)

    # -- prediction --------------------------------------------------------------------------
    def _prepare(self, params: Params) -> Params:
        params["W"] = np.asarray(params["W"], dtype=float)
        params["B"] = np.asarray(params["B"], dtype=float)
        params["cost_coef"] = np.asarray(params["cost_coef"], dtype=float).reshape(2, -1)
        params["bias"] = np.asarray(params.get("bias", np.zeros(len(params["B"]))), dtype=float)
        params["_WT"] = np.ascontiguousarray(params["W"].T)
        return params

    def _predict(self, params: Params, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.featurizer is not None
        raw = _sigmoid(X @ params["_WT"] + params["B"])
        perf = np.column_stack([np.interp(raw[:, j], kx, ky) for j, (kx, ky) in enumerate(zip(params["knots_x"], params["knots_y"]))])
        perf = np.clip(perf + params["bias"], 0.0, 1.0)
        words = np.expm1(X[:, -3] / self.featurizer.hand_weight * self.featurizer.hand_std[-3] + self.featurizer.hand_mean[-3])
        cost = np.c_[np.ones(len(X)), words] @ params["cost_coef"]
        return perf, np.maximum(cost, 0.0)

    # -- online learning ---------------------------------------------------------------------
    def _learn_online(self, column: int, predicted: float, score: float) -> None:
        rate = self.online_rate
        bias = self.params["bias"]
        bias[column] = float(np.clip(bias[column] + rate * (score - predicted), -self.max_shift, self.max_shift))

    # -- persistence -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        out = super().state()
        if out:
            out["points"] = dict(self.points)
            out["operating_point"] = self.operating_point
        return out

    def load_state(self, state: Any) -> None:
        super().load_state(state)
        self.points = {str(k): float(v) for k, v in state.get("points", {}).items()}
        if "lam" not in self.options and self.operating_point in self.points:
            self.lam = self.points[self.operating_point]

    def use_operating_point(self, point: str) -> None:
        """Route with another operating point chosen in fit (route-eval scores each)."""
        if point not in self.points:
            raise ValueError(f"{self.name}: no operating point {point!r} (fit chose {sorted(self.points)})")
        self.operating_point = point
        self.lam = self.points[point]


def featurizer_copy(f: TextFeaturizer) -> TextFeaturizer:
    return TextFeaturizer(dim=f.dim, char_ngrams=f.char_ngrams, word_bigrams=f.word_bigrams, hand_weight=f.hand_weight, task_cues=f.task_cues)


def operating_points(pred_perf: np.ndarray, pred_cost: np.ndarray, perf: np.ndarray, cost: np.ndarray, default: int) -> dict[str, float]:
    """lam of each operating point, from (out-of-fold) predictions of training rows."""
    rows = np.arange(len(perf))
    scale = float(perf.mean()) / max(float(cost.mean()), 1e-12)
    best_q, best_c = float(perf[:, default].mean()), float(cost[:, default].mean())
    tried = []
    for step in tradeoff.LAMBDA_STEPS:
        chosen = tradeoff.pick(pred_perf, pred_cost, step * scale, 0.0, None)
        tried.append((step * scale, float(perf[rows, chosen].mean()), float(cost[rows, chosen].mean())))
    within = [t for t in tried if t[2] <= best_c + 1e-9] or [min(tried, key=lambda t: t[2])]
    max_quality = max(within, key=lambda t: (round(t[1], 9), -t[2]))
    reaching = [t for t in tried if t[1] >= best_q - 1e-9]
    match_best = min(reaching, key=lambda t: (t[2], -t[1])) if reaching else max_quality
    return {"max_quality": max_quality[0], "match_best": match_best[0]}
