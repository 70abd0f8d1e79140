"""A small synthetic study for the analysis and report tests.

Eight fake models in four families over two datasets ("molecules", "crystals"), n = 240 samples each:

* ``orb-a``, ``orb-b``, ``orb-c`` (family ``orb``): noisy views of a shared latent ``Z`` plus an
  orb-specific latent, with a larger share of the family latent;
* ``mace-s``, ``mace-m``, ``mace-l`` (family ``mace``): the same with a mace-specific latent;
* ``chemlm`` (family ``chemlm``, text embedding): a nonlinear view of ``Z``;
* ``random`` (control): independent Gaussian noise.

Pair and single-model tables are computed with small dense reference implementations written here
(platonic-rep CKNNA and mutual kNN, DADApy-style information imbalance, TwoNN, Levina–Bickel MLE), so
the analyses are tested independently of the production metric engines.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from matteralign.analysis import AnalysisContext, Embedding

N = 240
FAMILIES = {
    "orb-a": ("orb", "equivariant"),
    "orb-b": ("orb", "vanilla"),
    "orb-c": ("orb", "vanilla"),
    "mace-s": ("mace", "invariant"),
    "mace-m": ("mace", "invariant"),
    "mace-l": ("mace", "equivariant"),
    "chemlm": ("chemlm", "text"),
    "random": ("random", "random"),
}


# ---------------------------------------------------------------- dense reference metrics (small n)
def l2(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def knn_ip(X, k):
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    return np.argsort(-S, axis=1, kind="stable")[:, :k]


def _mask(X, k):
    n = len(X)
    m = np.zeros((n, n))
    m[np.repeat(np.arange(n), k), knn_ip(X, k).ravel()] = 1.0
    return m


def _hsic_unbiased(K, L):
    m = K.shape[0]
    K = K.copy()
    L = L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    t = np.trace(K @ L) + K.sum() * L.sum() / ((m - 1) * (m - 2)) - 2 * (K @ L).sum() / (m - 2)
    return t / (m * (m - 3))


def ref_cknna(X, Y, k=25):
    K, L = X @ X.T, Y @ Y.T
    mk, ml = _mask(X, k), _mask(Y, k)
    m = mk * ml
    kl = _hsic_unbiased(m * K, m * L)
    kk = _hsic_unbiased(mk * K, mk * K)
    ll = _hsic_unbiased(ml * L, ml * L)
    return float(kl / (np.sqrt(kk * ll) + 1e-6))


def ref_mutual_knn(X, Y, k=10):
    a, b = knn_ip(X, k), knn_ip(Y, k)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(X))]))


def ref_information_imbalance(X, Y, k=1):
    _, order_x = _ranks(X)
    ry, _ = _ranks(Y)
    nn = order_x[:, 1 : k + 1]
    return float(np.mean(ry[np.arange(len(X))[:, None], nn]) / (len(X) / 2))


def ref_twonn(X):
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    d = np.sort(D, axis=1)[:, :2]
    mu = np.sort(d[:, 1] / d[:, 0])
    n = int(len(mu) * 0.9)
    mu = mu[:n]
    F = np.arange(1, n + 1) / len(X)
    x, y = np.log(mu), -np.log(1 - F)
    return float((x @ y) / (x @ x))


def ref_mle(X, k=50):
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    d = np.sort(D, axis=1)[:, :k]
    m = (k - 2) / np.log(d[:, -1:] / d[:, :-1]).sum(1)
    return float(np.mean(m))


# ---------------------------------------------------------------- synthetic embeddings
def make_embeddings(seed=0, n=N):
    rng = np.random.default_rng(seed)
    out = {}
    for ds, shift in (("molecules", 0.0), ("crystals", 0.5)):
        Z = rng.standard_normal((n, 4))
        fam_lat = {"orb": rng.standard_normal((n, 4)), "mace": rng.standard_normal((n, 4))}
        embs = {}
        for m, (fam, _) in FAMILIES.items():
            if fam in fam_lat:
                noise = 0.3 + shift if m.endswith(("c", "l")) else 0.3
                base = np.hstack([0.6 * Z, 1.4 * fam_lat[fam]])
                W = rng.standard_normal((8, 24))
                X = base @ W + noise * rng.standard_normal((n, 24))
            elif fam == "chemlm":
                X = np.tanh(Z @ rng.standard_normal((4, 16))) + 0.4 * rng.standard_normal((n, 16))
            else:
                X = rng.standard_normal((n, 20))
            embs[m] = Embedding(ids=[f"{ds}-{i}" for i in range(n)], X=X.astype(np.float32), layer="last")
        out[ds] = embs
    return out


def _ranks(Z):
    D = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, -1.0)
    order = np.argsort(D, axis=1, kind="stable")
    r = np.empty_like(order)
    r[np.arange(len(Z))[:, None], order] = np.arange(len(Z))[None, :]
    return r, order


def build_tables(embeddings, *, knn_ks=(25,)):
    """Tidy ``pairs`` and ``per_model`` tables (same semantics as the reference functions above)."""
    pair_rows, single_rows = [], []
    for ds, embs in embeddings.items():
        names = list(embs)
        Xs = {m: l2(e.X.astype(np.float64)) for m, e in embs.items()}
        n = len(next(iter(Xs.values())))
        ranks = {m: _ranks(X) for m, X in Xs.items()}
        grams = {m: X @ X.T for m, X in Xs.items()}
        masks = {(m, k): _mask(X, k) for m, X in Xs.items() for k in knn_ks}
        selfs = {(m, k): _hsic_unbiased(masks[m, k] * grams[m], masks[m, k] * grams[m]) for m in Xs for k in knn_ks}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                for k in knn_ks:
                    mm = masks[a, k] * masks[b, k]
                    kl = _hsic_unbiased(mm * grams[a], mm * grams[b])
                    v = float(kl / (np.sqrt(selfs[a, k] * selfs[b, k]) + 1e-6))  # = ref_cknna(Xs[a], Xs[b], k)
                    pair_rows.append((ds, a, b, "cknna", {"k": k}, n, v))
                pair_rows.append((ds, a, b, "mutual_knn", {"k": 10}, n, ref_mutual_knn(Xs[a], Xs[b], 10)))
                for x, y in ((a, b), (b, a)):
                    nn = ranks[x][1][:, 1:2]
                    ii = float(np.mean(ranks[y][0][np.arange(n)[:, None], nn]) / (n / 2))
                    pair_rows.append((ds, x, y, "information_imbalance", {"k": 1}, n, ii))
        for m in names:
            X = embs[m].X.astype(np.float64)
            single_rows.append((ds, m, "intrinsic_dimension", {"method": "twonn"}, n, ref_twonn(X)))
            single_rows.append((ds, m, "intrinsic_dimension", {"method": "mle", "k": 50}, n, ref_mle(X)))
    pairs = pd.DataFrame(pair_rows, columns=["dataset", "model_a", "model_b", "metric", "params", "n", "value"])
    pairs["params"] = pairs["params"].map(lambda d: json.dumps(d, sort_keys=True))
    for c in ("p_value", "ci_low", "ci_high"):
        pairs[c] = np.nan
    pairs["normalize"] = "l2"
    per_model = pd.DataFrame(single_rows, columns=["dataset", "model", "metric", "params", "n", "value"])
    per_model["params"] = per_model["params"].map(lambda d: json.dumps(d, sort_keys=True))
    return pairs, per_model


def models_meta():
    meta = {}
    for m, (fam, et) in FAMILIES.items():
        meta[m] = {
            "family": fam,
            "embedding_type": et,
            "n_params": 1000 * (1 + len(m)),
            "modality": "smiles" if fam == "chemlm" else "atoms",
            "control": fam == "random",
            "kind": "mlip" if fam in ("orb", "mace") else ("text" if fam == "chemlm" else "control"),
        }
    return meta


@pytest.fixture(scope="session")
def synthetic_tables():
    embs = make_embeddings()
    pairs, per_model = build_tables(embs)
    return embs, pairs, per_model


@pytest.fixture
def ctx(synthetic_tables, tmp_path):
    embs, pairs, per_model = synthetic_tables
    out = tmp_path / "analysis"
    out.mkdir()
    return AnalysisContext(
        out_dir=out,
        datasets={},
        embeddings={ds: dict(e) for ds, e in embs.items()},  # tests may replace entries
        models=models_meta(),
        pairs=pairs.copy(),
        per_model=per_model.copy(),
        params={},
        normalize="l2",
        seed=0,
    )
