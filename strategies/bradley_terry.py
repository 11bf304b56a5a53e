"""Bradley-Terry strengths from pairwise outcomes, per cluster of similar queries.

Every training query yields pairwise results (model a beat b if its performance was higher by
more than `margin`; ties carry no preference and are skipped). Training queries are grouped by
k-means on their outcomes (which models did well); a new query joins the cluster whose mean
feature vector is the most similar (cosine). Each cluster's strengths are fitted with Hunter's MM algorithm on its own
wins plus `prior_weight` pseudo-games played at the global strengths, so a small cluster stays
close to the global ranking. The predicted "performance" of a model is its mean win
probability against the others in the query's cluster; cost is the cluster's mean cost.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .learned import LearnedStrategy, Params


def wins_matrix(P: np.ndarray, margin: float) -> np.ndarray:
    """W[a, b] = number of queries where model a beat model b."""
    diff = P[:, :, None] - P[:, None, :]
    return (diff > margin).sum(axis=0).astype(float)


def fit_strengths(W: np.ndarray, prior: np.ndarray, prior_weight: float, iters: int = 200) -> np.ndarray:
    """MM updates for BT log-strengths; `prior_weight` games split by the prior's win odds."""
    m = len(W)
    p_prior = np.exp(prior)
    expected = p_prior[:, None] / (p_prior[:, None] + p_prior[None, :])
    W = W + prior_weight * expected * (1 - np.eye(m))  # pseudo-games regularise sparse clusters
    games = W + W.T
    wins = W.sum(axis=1)
    p = np.ones(m)
    for _ in range(iters):
        denom = (games / (p[:, None] + p[None, :] + 1e-12)).sum(axis=1)
        p = np.where(denom > 0, wins / np.maximum(denom, 1e-12), p)
        p = np.maximum(p, 1e-6)
        p /= np.exp(np.log(p).mean())
    return np.log(p)


def kmeans(Y: np.ndarray, k: int, seed: int, iters: int = 50) -> np.ndarray:
    """Euclidean k-means with k-means++ seeding; returns the label of each row."""
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(Y)))
    cents = [Y[rng.integers(len(Y))]]
    for _ in range(1, k):
        d = ((Y[:, None, :] - np.array(cents)[None]) ** 2).sum(axis=2).min(axis=1)
        cents.append(Y[rng.choice(len(Y), p=d / d.sum())] if d.sum() > 0 else Y[rng.integers(len(Y))])
    C = np.array(cents)
    for _ in range(iters):
        lab = ((Y[:, None, :] - C[None]) ** 2).sum(axis=2).argmin(axis=1)
        for j in range(k):
            if (lab == j).any():
                C[j] = Y[lab == j].mean(axis=0)
    return lab


class BradleyTerry(LearnedStrategy):
    name = "bradley_terry"

    def _learn(self, queries: Sequence[str], X: np.ndarray, P: np.ndarray, C: np.ndarray) -> Params:
        margin = float(self.options.get("margin", 0.0))
        prior_weight = float(self.hyper("prior_weight", 5.0))
        k = int(self.hyper("clusters", 4))
        seed = int(self.options.get("seed", 0))
        glob = fit_strengths(wins_matrix(P, margin), np.zeros(P.shape[1]), 1.0)
        # clusters of queries on which the same models win (outcome space), each represented
        # in feature space by its members' mean feature vector, to which new queries are matched
        lab = kmeans(P, k, seed)
        used = [j for j in range(lab.max() + 1) if (lab == j).any()]
        cents = np.array([X[lab == j].mean(axis=0) for j in used])
        cents /= np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
        strengths, costs = [], []
        for j in used:
            rows = lab == j
            strengths.append(fit_strengths(wins_matrix(P[rows], margin), glob, prior_weight))
            n = rows.sum()
            costs.append((C[rows].sum(axis=0) + prior_weight * C.mean(axis=0)) / (n + prior_weight))
        return {"centroids": cents, "strengths": np.array(strengths), "costs": np.array(costs)}

    def _predict(self, params: Params, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lab = np.argmax(X @ params["centroids"].T, axis=1)
        s = params["strengths"][lab]  # (q, M)
        win = 1.0 / (1.0 + np.exp(-(s[:, :, None] - s[:, None, :])))
        m = s.shape[1]
        perf = (win.sum(axis=2) - 0.5) / max(m - 1, 1)  # mean win prob. vs the others
        return perf, params["costs"][lab]
