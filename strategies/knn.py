"""k nearest training queries (cosine over tf-idf text features), shrunk toward the model means.

With a few hundred noisy examples the raw neighbour average swings wildly; `shrink` adds that
many pseudo-neighbours carrying the global per-model mean, so a query with no close neighbours
falls back to the prior ranking.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .learned import LearnedStrategy, Params


class KNNStrategy(LearnedStrategy):
    name = "knn"

    def _learn(self, queries: Sequence[str], X: np.ndarray, P: np.ndarray, C: np.ndarray) -> Params:
        # neighbours are stored as text (compact artifact); `_prepare` re-featurises them
        return {"queries": list(queries), "perf": P, "cost": C}

    def _prepare(self, params: Params) -> Params:
        assert self.featurizer is not None
        from scipy import sparse

        X = self.featurizer.transform_many(params["queries"])
        # similarity on the text part only; sparse (a query has tens of grams in 2048 buckets),
        # so a decision costs the neighbours' non-zeros, not rows x buckets (5x on 2,000 rows)
        text = sparse.csr_matrix(X[:, : self.featurizer.dim])
        return {**params, "_text": text}

    def _predict(self, params: Params, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.featurizer is not None
        k = int(self.hyper("k", 10))
        shrink = float(self.hyper("shrink", 3.0))
        P, C, text = params["perf"], params["cost"], params["_text"]
        sims = np.clip(np.asarray((text @ X[:, : self.featurizer.dim].T).T), 0.0, None)
        k = min(k, len(P))
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(P) else np.tile(np.arange(len(P)), (len(X), 1))
        w = np.take_along_axis(sims, top, axis=1)  # (q, k)
        denom = w.sum(axis=1, keepdims=True) + shrink
        perf = (np.einsum("qk,qkm->qm", w, P[top]) + shrink * P.mean(axis=0)) / denom
        cost = (np.einsum("qk,qkm->qm", w, C[top]) + shrink * C.mean(axis=0)) / denom
        return perf, cost

