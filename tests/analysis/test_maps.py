"""UMAP maps: seeded reproducibility, label organisation as numbers, dataset separability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matteralign.analysis import get_analysis
from matteralign.analysis.maps import ERROR_LABEL, knn_accuracy, knn_r2, map_models, umap_embedding

from .synthetic_matter import make_context


@pytest.fixture(scope="module")
def maps_result(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("maps"), n=100)
    return ctx, get_analysis("maps")(ctx)


def test_umap_is_seeded():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (120, 10)), rng.normal(4, 1, (120, 10))])
    Y1 = umap_embedding(X, seed=3)
    Y2 = umap_embedding(X, seed=3)
    Y3 = umap_embedding(X, seed=4)
    assert Y1.shape == (240, 2)
    np.testing.assert_array_equal(Y1, Y2)
    assert not np.allclose(Y1, Y3)
    # the two clusters stay apart in the map
    groups = np.repeat([0, 1], 120)
    assert knn_accuracy(Y1, groups, k=10, cv=5, seed=0) > 0.98


def test_knn_r2_organised_label_beats_shuffled():
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((300, 3))
    X = Z @ rng.standard_normal((3, 12)) + 0.05 * rng.standard_normal((300, 12))
    y = Z[:, 0] + 0.5 * Z[:, 1] ** 2
    Y = umap_embedding(X, seed=0)
    organised_full, organised_map = knn_r2(X, y), knn_r2(Y, y)
    shuffled = knn_r2(Y, rng.permutation(y))
    assert organised_full > 0.8
    assert organised_map > 0.5
    assert shuffled < 0.05
    assert organised_map > shuffled + 0.5
    assert np.isnan(knn_r2(X, np.full(300, np.nan)))


def test_maps_analysis_tables(maps_result):
    ctx, res = maps_result
    # chemlm reads SMILES: not a 3D model, not mapped; the random control is mapped (as a baseline)
    assert map_models(ctx) == ["lin-a", "lin-b", "tanh-c", "random"]
    assert len(res.figures) == 4 and all(p.exists() and p.stat().st_size > 10_000 for p in res.figures)
    sep = res.tables["map_dataset_separability"].set_index("model")
    assert sep.loc["lin-a", "accuracy_embedding"] > 0.95 and sep.loc["lin-a", "accuracy_umap"] > 0.95
    assert sep.loc["random", "accuracy_embedding"] < 0.7
    assert (sep["chance"] == 0.5).all()
    org = res.tables["map_label_organisation"]
    lin = org[(org.model == "lin-a") & (org.label == "lin")]
    assert len(lin) == 2  # both datasets
    assert (lin["knn_r2_embedding"] > 0.5).all() and (lin["knn_r2_umap"] > 0.3).all()
    assert (lin["knn_r2_umap"] > lin["knn_r2_shuffled"] + 0.3).all()
    assert set(org[org.label == "wave"]["dataset"]) == {"molecules"}  # a molecules-only label
    assert (org[org.label == "noise"]["knn_r2_embedding"] < 0.1).all()
    assert (org[(org.model == "random") & (org.label == "lin")]["knn_r2_embedding"] < 0.1).all()
    err = org[org.label == ERROR_LABEL]
    assert set(err["model"]) == {"lin-a", "lin-b", "tanh-c"}  # the models with energies
    coords = pd.read_csv(res.files[0])
    assert len(coords) == 4 * 200 and set(coords["dataset"]) == {"molecules", "crystals"}
    assert any("dataset membership" in f for f in res.findings)


def test_maps_single_dataset_and_no_models(tmp_path):
    ctx = make_context(tmp_path, n=60, params={"max_models": 1, "labels": ["lin"]})
    del ctx.embeddings["crystals"]
    res = get_analysis("maps")(ctx)
    assert len(res.figures) == 1 and "map_dataset_separability" not in res.tables
    assert set(res.tables["map_label_organisation"]["label"]) == {"lin", ERROR_LABEL}
    for m in ctx.models.values():
        m["modality"] = "smiles"
    assert get_analysis("maps")(ctx).figures == []


def test_extension_analyses_render_into_report(maps_result, tmp_path):
    """probes, transfer, maps and convergence on one synthetic study render into one report."""
    import re

    from matteralign.report import write_report

    ctx, maps_res = maps_result
    out = tmp_path / "report"
    results = []
    for name in ("probes", "transfer", "convergence"):
        ctx.out_dir = out / "figures" / name
        ctx.out_dir.mkdir(parents=True)
        results.append(get_analysis(name)(ctx))
    results.append(maps_res)
    index = write_report(results, out_dir=out, study={"name": "synthetic"}, provenance={})
    html = index.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == sum(len(r.figures) for r in results) == 2 + 2 + 2 + 4
    for r in results:
        assert f'id="{r.name}"' in html and r.findings


def test_extension_analyses_without_labels(ctx):
    """The shared synthetic context has embeddings but no datasets: every analysis returns an empty result."""
    for name in ("probes", "transfer", "maps", "convergence"):
        res = get_analysis(name)(ctx)
        assert res.figures == [] and res.tables == {} and res.findings == []
