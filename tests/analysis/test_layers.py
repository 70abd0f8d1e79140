"""Layer x layer maps, best-matching layers, platonic max over layer pairs, and the layers report section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matteralign.analysis import AnalysisContext, Embedding
from matteralign.analysis.layers import COLUMNS, best_matches, layer_map, max_over_layer_pairs, run
from matteralign.errors import InputError
from matteralign.metrics import pairwise, permutation_test


def _net(n=240, depth=5, d=24, seed=0):
    """Activations of a random tanh network: neighbouring layers are more alike than distant ones."""
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, d))
    out = {}
    for i in range(depth):
        x = np.tanh(x @ r.standard_normal((d, d)) * 1.5 / np.sqrt(d)) + 0.05 * r.standard_normal((n, d))
        out[f"layer{i}"] = x.copy()
    return out


@pytest.fixture(scope="module")
def net():
    return _net()


def _matrix(t, metric):
    t = t[t["metric"] == metric]
    return t.pivot(index="layer_a", columns="layer_b", values="value").loc[
        list(dict.fromkeys(t["layer_a"])), list(dict.fromkeys(t["layer_b"]))].to_numpy()


@pytest.mark.parametrize("metric", ["cka", "unbiased_cka", "cknna", "mutual_knn"])
def test_self_map_has_its_maximum_on_the_diagonal(net, metric):
    t = layer_map(net, metrics=metric, model_a="net", k=10)
    assert list(t.columns) == COLUMNS and len(t) == 25
    M = _matrix(t, metric)
    assert (M.argmax(axis=1) == np.arange(5)).all() and (M.argmax(axis=0) == np.arange(5)).all()
    if metric in ("cka", "unbiased_cka"):
        np.testing.assert_allclose(M, M.T, atol=1e-12)  # symmetric metrics: computed once, mirrored
        np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-9 if metric == "cka" else 1e-4)  # eps of debiased CKA
        off = M[~np.eye(5, dtype=bool)]
        assert off.max() < 0.99  # the layers differ: the diagonal is a real maximum
    assert t["p_value"].isna().all() and t["calibrated"].isna().all()  # not asked for


def test_best_match_path_against_a_copy_is_the_identity(net):
    copy = {k: v.copy() for k, v in net.items()}
    for metric in ("cka", "cknna"):
        t = layer_map(net, copy, metrics=metric, model_a="net", model_b="net-copy", k=10)
        bm = best_matches(t, reps_a=net, reps_b=copy, n_subsamples=8, seed=1)
        assert list(bm["best_layer"]) == list(net) and list(bm["best_depth"]) == [0, 1, 2, 3, 4]
        assert (bm["margin"] > 0).all()
        # the runner-up is a neighbouring layer
        assert all(abs(int(a[-1]) - int(b[-1])) == 1 for a, b in zip(bm["layer_a"], bm["runner_up"], strict=True))


def test_cells_equal_pairwise_and_permutation_test(net):
    """Values as the metrics' all-pairs routes; p-values and calibrated scores (calibrate_pairs) as permutation_test."""
    other = _net(seed=3, depth=3, d=16)
    metrics = ["cka", "unbiased_cka", ("cknna", {"k": 10}), ("mutual_knn", {"k": 7})]
    t = layer_map(net, other, metrics=metrics, model_a="A", model_b="B", depths_a=[0, 1, 1, 2, 3],
                  n_permutations=30, seed=7)
    assert len(t) == 4 * 5 * 3 and list(t["depth_a"].iloc[:15:3]) == [0, 1, 1, 2, 3]
    reps = {f"A/{k}": v for k, v in net.items()} | {f"B/{k}": v for k, v in other.items()}
    ref = pairwise(reps, metrics)  # the metrics' own all-pairs routes on the union of the layers
    for r in t.itertuples():
        want = ref[(ref["model_a"] == f"A/{r.layer_a}") & (ref["model_b"] == f"B/{r.layer_b}")
                   & (ref["metric"] == r.metric)]["value"].item()
        assert r.value == pytest.approx(want, abs=1e-9)
    for metric, params in (("cknna", {"k": 10}), ("cka", {}), ("unbiased_cka", {}), ("mutual_knn", {"k": 7})):
        for la, lb in (("layer0", "layer0"), ("layer3", "layer2")):
            row = t[(t["metric"] == metric) & (t["layer_a"] == la) & (t["layer_b"] == lb)].iloc[0]
            pt = permutation_test(net[la], other[lb], metric=metric, n_permutations=30, seed=7, **params)
            assert row["value"] == pytest.approx(pt.value, abs=1e-9)
            assert row["p_value"] == pt.p_value and row["calibrated"] == pytest.approx(pt.calibrated, abs=1e-9)


def test_each_layer_is_searched_once(net, monkeypatch):
    from matteralign.metrics import _cache

    calls = []
    real = _cache.knn_graph
    monkeypatch.setattr(_cache, "knn_graph", lambda X, **kw: calls.append(X.shape) or real(X, **kw))
    other = _net(seed=4, depth=4)
    layer_map(net, other, metrics=[("cknna", {"k": 5}), ("mutual_knn", {"k": 10}), "cka"], n_permutations=3)
    assert len(calls) == 5 + 4  # one search per layer, at the largest k, whatever the cells and metrics
    calls.clear()
    layer_map(net, metrics=["cknna", "mutual_knn"], k=10)
    assert len(calls) == 5  # a self map shares its caches


def test_best_beats_runner_up_only_when_it_really_does():
    r = np.random.default_rng(0)
    n = 300
    z = r.standard_normal((n, 8))
    a = {"x": z @ r.standard_normal((8, 16))}
    # b1 and b2 are the same view up to tiny noise: the best is not significantly better than the runner-up
    view = z @ r.standard_normal((8, 16))
    b = {"b1": view + 1e-3 * r.standard_normal((n, 16)), "b2": view + 1e-3 * r.standard_normal((n, 16)),
         "far": r.standard_normal((n, 16))}
    t = layer_map(a, b, metrics="cka", model_a="a", model_b="b")
    bm = best_matches(t, reps_a=a, reps_b=b, n_subsamples=30, seed=0)
    assert bm["runner_up"].item() in ("b1", "b2") and bm["significant"].item() is False
    # without the near-duplicate the best is clearly better than the runner-up
    b2 = {"b1": b["b1"], "far": b["far"]}
    t2 = layer_map(a, b2, metrics="cka", model_a="a", model_b="b")
    bm2 = best_matches(t2, reps_a=a, reps_b=b2, n_subsamples=30, seed=0)
    assert bm2["best_layer"].item() == "b1" and bm2["significant"].item() is True and bm2["margin_low"].item() > 0.5
    assert best_matches(t2)["significant"].item() is None  # no test asked for


def test_platonic_max_over_layer_pairs(net):
    other = _net(seed=5, depth=3)
    t = layer_map(net, other, metrics=["cka", "cknna"], model_a="A", model_b="B", k=10)
    agg = max_over_layer_pairs(t)
    assert len(agg) == 2 and set(agg["aggregate"]) == {"platonic_max"}
    for r in agg.itertuples():
        cells = t[t["metric"] == r.metric]
        best = cells.loc[cells["value"].idxmax()]
        assert r.value == best["value"] and (r.layer_a, r.layer_b) == (best["layer_a"], best["layer_b"])
        assert r.n_layer_pairs == 15


def test_bad_input_is_named():
    with pytest.raises(InputError, match="same samples"):
        layer_map({"a": np.ones((10, 3)) + np.arange(10)[:, None]}, {"b": np.random.default_rng(0).random((12, 3))},
                  metrics="cka")
    with pytest.raises(InputError, match="pair metric"):
        layer_map({"a": np.random.default_rng(0).random((20, 3))}, metrics="intrinsic_dimension")
    with pytest.raises(InputError, match="non-empty mapping"):
        layer_map({}, metrics="cka")
    with pytest.raises(InputError, match="n_permutations"):
        layer_map({"a": np.random.default_rng(0).random((20, 3))}, metrics="cka", n_permutations=-1)


def _ctx(tmp_path, layered: bool):
    net, other = _net(), _net(seed=9, depth=3)
    ids = [f"s{i}" for i in range(240)]

    def emb(layers, default):
        e = Embedding(ids=ids, X=layers[default], layer=default)
        if layered:
            e.layers = {k: Embedding(ids=ids, X=v, layer=k) for k, v in layers.items()}
        return e

    embs = {"net": emb(net, "layer4"), "other": emb(other, "layer2")}
    return AnalysisContext(out_dir=tmp_path, datasets={}, embeddings={"toy": embs}, models={},
                           pairs=pd.DataFrame(), per_model=pd.DataFrame(),
                           params={"metrics": ["cka", "cknna"], "k": 10, "n_subsamples": 5, "n_permutations": 20,
                                   "aggregate": "platonic_max", "reference": "other"})


def test_report_section(tmp_path):
    assert run(_ctx(tmp_path, layered=False)) is None  # one layer per model: no section
    res = run(_ctx(tmp_path, layered=True))
    assert res.name == "layers"
    lm = res.tables["layer_map"]
    # net x net (25), net x other (15), other x other (9), for each metric
    assert len(lm) == 2 * (25 + 15 + 9) and set(lm["dataset"]) == {"toy"}
    knn = lm["metric"] == "cknna"  # permutation nulls where they relabel cached graphs, not for CKA by default
    assert lm.loc[knn, "p_value"].between(1 / 21, 1).all() and lm.loc[~knn, "p_value"].isna().all()
    bm = res.tables["best_matches"]
    assert bm["significant"].map(lambda v: isinstance(v, (bool, np.bool_))).all()
    assert set(res.tables["best_matches"]["model_a"]) == {"net", "other"}
    assert len(res.tables["platonic_max"]) == 2
    ref = res.tables["to_reference"]
    assert set(ref["model_b"]) == {"other"} and set(ref["layer_b"]) == {"layer2"} and len(ref) == 2 * (5 + 3)
    self_ref = ref[(ref["model_a"] == "other") & (ref["metric"] == "cka")].set_index("layer_a")["value"]
    assert self_ref["layer2"] == pytest.approx(1.0)  # the reference layer with itself
    assert len(res.figures) == 2 * 3 + 2 and all(p.exists() and p.stat().st_size > 1000 for p in res.figures)
    assert res.findings and "best matches" in res.findings[0]


def test_cross_map_with_shared_caches_equals_fresh_ones(net):
    from matteralign.metrics import prepare

    shared = {k: prepare(v, k_max=10) for k, v in net.items()}
    fresh = layer_map(net, {k: v.copy() for k, v in net.items()}, metrics=["cka", "unbiased_cka"], model_b="b")
    same = layer_map(shared, dict(shared), metrics=["cka", "unbiased_cka"], model_b="b")
    np.testing.assert_allclose(same["value"], fresh["value"], rtol=1e-12, atol=1e-12)


def test_a_layer_that_cannot_be_normalised_is_left_out_on_request(net):
    bad = dict(net)
    zero = net["layer1"].copy()
    zero[:3] = 0.0  # e.g. mean-pooled l > 0 features of a symmetric molecule
    bad["layer1"] = zero
    with pytest.raises(InputError, match="all-zero row"):
        layer_map(bad, metrics="cka")
    t = layer_map(bad, metrics="cka", skip_invalid=True, model_a="net")
    assert "layer1" not in set(t["layer_a"]) and len(t) == 16
    assert list(dict.fromkeys(t["depth_a"])) == [0, 2, 3, 4]  # depths of the layers kept
    assert "all-zero" in t.attrs["skipped"]["net/layer1"]
