"""LinUCB over query features, one arm per model name; keeps learning online.

`fit` warm-starts every arm from the offline data (full information: each training query
rewards every arm with that model's performance). Afterwards `feedback(outcome, score)` (and a
failed `observe`, as reward 0) updates the chosen arm with a Sherman-Morrison step, so client
scores move future choices. A deployment of a model never seen is scored as a fresh arm would
be (the mean of the known arms, or `prior` when there are none, plus the wide confidence
bonus of an untried arm), so it gets explored, and gets its own arm on its first reward.
Without `fit` it starts cold (no arms) and learns from feedback alone.
Features are a small hashed vector (default 64 buckets) so the d x d inverse stays cheap.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import Outcome
from .features import TextFeaturizer
from .learned import LearnedStrategy, Params, match


def _aug(X: np.ndarray) -> np.ndarray:
    """Append a constant so an arm's level (not just its slope) moves with feedback."""
    return np.concatenate([X, np.ones(X.shape[:-1] + (1,))], axis=-1)


class ContextualBandit(LearnedStrategy):
    name = "contextual_bandit"
    allow_pin = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # the bandit learns online by design: a whole training row's weight per answer by
        # default (bounded by 1), lower to damp bursts
        self.rate = float(options.get("online_rate", 1.0)) if "online_rate" in options else 1.0
        self.featurizer = self._new_featurizer().cold()  # replaced by a fitted one in `fit`
        d = self.featurizer.size + 1
        self.params = self._prepare({
            "A_inv": np.zeros((0, d, d)), "b": np.zeros((0, d)), "mu": np.zeros(0), "cost": np.zeros(0),
        })

    def _fresh(self, x: np.ndarray) -> tuple[float, float]:
        """(optimistic performance, cost) of an arm with no data for features `x`."""
        mu = self.params["mu"]
        prior = float(mu.mean()) if mu.size else float(self.options.get("prior", 0.5))
        cost = float(self.params["cost"].mean()) if mu.size else 0.0
        reg = float(self.hyper("ridge", 1.0))
        width = float(np.linalg.norm(_aug(x))) / np.sqrt(reg)
        return prior + float(self.options.get("alpha", 0.1)) * width, cost

    def _neutral(self, x: np.ndarray, perf: np.ndarray, cost: np.ndarray, known: list[int]) -> tuple[float, float]:
        return self._fresh(x)

    def _new_featurizer(self) -> TextFeaturizer:
        o = self.options
        return TextFeaturizer(
            dim=int(o.get("dim", 64)),
            char_ngrams=tuple(o.get("char_ngrams", ())),
            word_bigrams=bool(o.get("word_bigrams", False)),
            hand_weight=float(o.get("hand_weight", 0.3)),
        )

    def _learn(self, queries: Sequence[str], X: np.ndarray, P: np.ndarray, C: np.ndarray) -> Params:
        reg = float(self.hyper("ridge", 1.0))
        mu = P.mean(axis=0)
        X = _aug(X)
        a_inv = np.linalg.inv(reg * np.eye(X.shape[1]) + X.T @ X)
        b = (P - mu).T @ X  # (M, d)
        return {
            "A_inv": np.repeat(a_inv[None], P.shape[1], axis=0),
            "b": b,
            "mu": mu,
            "cost": C.mean(axis=0),
        }

    def _prepare(self, params: Params) -> Params:
        assert self.featurizer is not None
        d = self.featurizer.size + 1  # JSON turns an empty (0, d, d) array into []: restore shapes
        params["A_inv"] = np.asarray(params["A_inv"], dtype=float).reshape(-1, d, d)
        params["b"] = np.asarray(params["b"], dtype=float).reshape(-1, d)
        params["mu"] = np.asarray(params["mu"], dtype=float).reshape(-1)
        params["cost"] = np.asarray(params["cost"], dtype=float).reshape(-1)
        params["_theta"] = np.einsum("mij,mj->mi", params["A_inv"], params["b"])
        return params

    def _predict(self, params: Params, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        alpha = float(self.options.get("alpha", 0.1))  # width of the optimism bonus
        X = _aug(X)
        mean = params["mu"] + X @ params["_theta"].T
        width = np.sqrt(np.maximum(np.einsum("qi,mij,qj->qm", X, params["A_inv"], X), 0.0))
        return mean + alpha * width, np.broadcast_to(params["cost"], mean.shape).copy()

    # -- online learning ---------------------------------------------------------------------
    def _arm(self, outcome: Outcome) -> int:
        col = match(outcome.deployment, self.index)
        if col is not None:
            return col
        p = self.params  # new arm: neutral prior, identity precision (wide bonus)
        d = p["b"].shape[1]
        reg = float(self.hyper("ridge", 1.0))
        prior = float(p["mu"].mean()) if p["mu"].size else float(self.options.get("prior", 0.5))
        cost = float(p["cost"].mean()) if p["cost"].size else 0.0
        p["A_inv"] = np.concatenate([p["A_inv"], np.eye(d)[None] / reg])
        p["b"] = np.vstack([p["b"], np.zeros(d)])
        p["mu"] = np.append(p["mu"], prior)
        p["cost"] = np.append(p["cost"], cost)
        p["_theta"] = np.vstack([p["_theta"], np.zeros(d)])
        # key by the provider model: several deployments of one model group ("chat") may serve
        # different models, and an arm per group could not tell them apart
        key = outcome.deployment.provider_model or outcome.deployment.model
        self.models.append(key)
        self.index[key] = len(self.models) - 1
        return len(self.models) - 1

    def _update(self, outcome: Outcome, reward: float) -> None:
        """A weighted Sherman-Morrison step: each answer counts `online_rate` of a training row,
        so a burst of feedback moves an arm by a bounded amount per answer."""
        assert self.featurizer is not None  # cold-started in __init__
        x: Any = outcome.decision.context
        if not isinstance(x, np.ndarray) or x.shape != (self.featurizer.size,):
            x = self.featurizer.transform(outcome.request.query)
        x = _aug(x)
        m = self._arm(outcome)
        p = self.params
        a = p["A_inv"][m]
        w = self.rate
        ax = a @ x
        p["A_inv"][m] = a - w * np.outer(ax, ax) / (1.0 + w * (x @ ax))
        p["b"][m] += w * (reward - p["mu"][m]) * x
        p["_theta"][m] = p["A_inv"][m] @ p["b"][m]

    def feedback(self, outcome: Outcome, score: float) -> None:
        self._update(outcome, float(np.clip(score, 0.0, 1.0)))

    def observe(self, outcome: Outcome) -> None:
        if not outcome.success:  # an error is a zero-quality answer; success waits for feedback
            self._update(outcome, 0.0)
