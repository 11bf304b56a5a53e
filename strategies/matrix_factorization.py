"""Low-rank model of (query x model) performance and cost: reduced-rank ridge regression.

Y = [perf | cost] (standardised columns) ~ mean + X W V^T, where V (models x rank) are model
factors and X W the query factors, a linear map of the text features. Solved in closed form
with numpy: ridge fit (dual form, n << d), then the fitted values' top singular vectors give V.
Sharing `rank` factors across models and across perf/cost pools the weak per-model signal
(e.g. "hard query" hurts every model) instead of fitting six independent noisy regressions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .learned import LearnedStrategy, Params


class MatrixFactorization(LearnedStrategy):
    name = "matrix_factorization"

    def _learn(self, queries: Sequence[str], X: np.ndarray, P: np.ndarray, C: np.ndarray) -> Params:
        alpha = float(self.hyper("alpha", 3.0))
        rank = int(self.hyper("rank", 3))
        Y = np.hstack([P, C])
        y_mean, y_std = Y.mean(axis=0), Y.std(axis=0) + 1e-9
        x_mean = X.mean(axis=0)
        Xc, Yc = X - x_mean, (Y - y_mean) / y_std
        dual = np.linalg.solve(Xc @ Xc.T + alpha * np.eye(len(X)), Yc)  # (n, 2M)
        B = Xc.T @ dual  # ridge weights (d, 2M)
        _, _, vt = np.linalg.svd(Xc @ B, full_matrices=False)
        V = vt[: max(1, min(rank, vt.shape[0]))].T  # model factors (2M, r)
        return {"W": B @ V, "V": V, "x_mean": x_mean, "y_mean": y_mean, "y_std": y_std}

    def _predict(self, params: Params, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Y = ((X - params["x_mean"]) @ params["W"]) @ params["V"].T * params["y_std"] + params["y_mean"]
        m = Y.shape[1] // 2
        return Y[:, :m], Y[:, m:]
