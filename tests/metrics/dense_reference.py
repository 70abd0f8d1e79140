"""Dense O(N^2) reference implementations written from the formulas (small N only).

They follow platonic-rep / google-research semantics literally: full N x N kernels, masks and sums, so the
sparse / feature-space / streamed library code can be checked against them.
"""

from __future__ import annotations

import numpy as np


def knn_dense(X: np.ndarray, k: int, metric: str = "ip") -> np.ndarray:
    """Indices (N, k) of the k nearest rows, self excluded; best first, ties by lower index."""
    n = X.shape[0]
    if metric == "ip":
        score = -(X @ X.T)
    else:
        score = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(score, np.inf)
    index = np.broadcast_to(np.arange(n), score.shape)
    return np.lexsort((index, score), axis=-1)[:, :k]


def knn_mask(X: np.ndarray, k: int) -> np.ndarray:
    M = np.zeros((X.shape[0], X.shape[0]))
    np.put_along_axis(M, knn_dense(X, k), 1.0, axis=1)
    return M


def hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2012 Eq. 5 with K~ L~^T as in platonic-rep (matrices need not be symmetric)."""
    m = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    return float(
        (np.sum(Kt * Lt.T) + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * np.sum(Kt @ Lt) / (m - 2))
        / (m * (m - 3))
    )


def hsic_biased(K: np.ndarray, L: np.ndarray) -> float:
    m = K.shape[0]
    H = np.eye(m) - 1.0 / m
    return float(np.trace(K @ H @ L @ H))


def cknna_dense(X, Y, k):
    K, L = X @ X.T, Y @ Y.T
    MK, ML = knn_mask(X, k), knn_mask(Y, k)
    M = MK * ML
    return hsic_unbiased(M * K, M * L) / (np.sqrt(hsic_unbiased(MK * K, MK * K) * hsic_unbiased(ML * L, ML * L)) + 1e-6)


def mutual_knn_dense(X, Y, k):
    return float((knn_mask(X, k) * knn_mask(Y, k)).sum(1).mean() / k)


def cycle_knn_dense(X, Y, k):
    MX = knn_mask(X, k)
    ky = knn_dense(Y, k)
    n = X.shape[0]
    # i -> j (Y's neighbours), back to i in X's neighbours of j
    return float(np.mean([MX[ky[i], i].max() for i in range(n)]))


def cka_dense(K, L, debiased=False, eps=0.0):
    h = hsic_unbiased if debiased else hsic_biased
    return h(K, L) / (np.sqrt(h(K, K) * h(L, L)) + eps)


def gram_linear(X):
    return X @ X.T


def gram_rbf(X, threshold=1.0):
    G = X @ X.T
    sq = np.diag(G)
    D2 = -2 * G + sq[:, None] + sq[None, :]
    return np.exp(-D2 / (2 * threshold**2 * np.median(D2)))
