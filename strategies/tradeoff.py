"""Choosing the performance/cost trade-off of a learned router from out-of-fold predictions.

A learned strategy ranks models by  pred_perf - lam * pred_cost (+ bonus for the default model).
`lam` buys cost savings with predicted performance; `bonus` makes the router leave the best
single model only when the prediction is clearly better (noisy predictors otherwise lose
more on wrong switches than they win on right ones). Both are picked on the TRAIN split only,
from predictions made for training rows by models that did not see them (inner k-fold), with
the constraint that the routed cost stays within the default model's cost. `bonus=inf` (always
the default model) is always a candidate, so a router with no usable signal falls back to the
best single model instead of doing worse than it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

# lam is searched relative to mean(perf)/mean(cost) so the grid is unit-free.
LAMBDA_STEPS: tuple[float, ...] = (0.0, *np.geomspace(0.01, 20.0, 36).tolist())
BONUS_STEPS: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, math.inf)


def pick(pred_perf: np.ndarray, pred_cost: np.ndarray, lam: float, bonus: float, default: int | None) -> np.ndarray:
    """Index of the chosen model per row; ties go to the lower predicted cost."""
    utility = pred_perf - lam * pred_cost
    if default is not None and bonus > 0:
        if math.isinf(bonus):
            return np.full(len(pred_perf), default)
        utility = utility.copy()
        utility[:, default] += bonus
    top = utility >= utility.max(axis=1, keepdims=True) - 1e-12
    return np.where(top, pred_cost, np.inf).argmin(axis=1)


def kfold(n: int, folds: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::folds] for i in range(folds) if len(order[i::folds])]


def out_of_fold(
    n: int,
    folds: int,
    seed: int,
    train_and_predict: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    n_models: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for every row from a model trained without that row's fold."""
    perf = np.zeros((n, n_models))
    cost = np.zeros((n, n_models))
    for held in kfold(n, folds, seed):
        train = np.setdiff1d(np.arange(n), held)
        perf[held], cost[held] = train_and_predict(train, held)
    return perf, cost


def select(
    pred_perf: np.ndarray,
    pred_cost: np.ndarray,
    perf: np.ndarray,
    cost: np.ndarray,
    default: int,
    lambdas: Sequence[float] = LAMBDA_STEPS,
    bonuses: Sequence[float] = BONUS_STEPS,
) -> tuple[float, float, float, float]:
    """(lam, bonus, perf, cost): best realised mean performance with mean cost <= the default's
    (ties: lower cost); if no combination is within budget, the cheapest one."""
    budget = float(cost[:, default].mean())
    scale = float(perf.mean()) / max(float(cost.mean()), 1e-12)
    rows = np.arange(len(perf))
    tried = []
    for step in lambdas:
        for bonus in bonuses:
            chosen = pick(pred_perf, pred_cost, step * scale, bonus, default)
            tried.append((step * scale, bonus, float(perf[rows, chosen].mean()), float(cost[rows, chosen].mean())))
            if math.isinf(bonus):
                break  # the pinned default does not depend on lam
    feasible = [t for t in tried if t[3] <= budget + 1e-9]
    if not feasible:
        return min(tried, key=lambda t: t[3])
    return max(feasible, key=lambda t: (round(t[2], 9), -t[3], math.isinf(t[1])))
