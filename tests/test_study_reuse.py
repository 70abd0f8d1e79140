"""Reuse: a copied study reruns from its caches; one store shared by two studies (``store`` / ``--store``)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from matteralign.study import Study

pytestmark = pytest.mark.slow

BASE = {
    "name": "reuse",
    "seed": 0,
    "models": ["composition", "random"],
    "datasets": [{"name": "g2", "n": 40}],
    "metrics": {"cknna": {"k": 5}, "dcor2": {}},
    "model_metrics": {},
    "analyses": {"matrix": {"k": 5}, "tree": {"k": 5}},
}


def test_a_copied_study_reruns_from_its_caches(tmp_path, monkeypatch):
    first = Study.from_dict({**BASE, "out": str(tmp_path / "a")}).run(progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    import matteralign.analysis as analysis
    import matteralign.execute.measure as measure

    def boom(*a, **k):  # nothing may be extracted, measured or analysed again
        raise AssertionError("recomputed")

    monkeypatch.setattr(analysis, "get_analysis", lambda name: boom)
    monkeypatch.setattr(measure, "measure_block", boom)
    again = Study.from_dict({**BASE, "out": str(tmp_path / "b")}).run(progress=False, executor="inline")
    pd.testing.assert_frame_equal(again.pairs, first.pairs)
    assert again.report.read_text().count("<img") == first.report.read_text().count("<img")


def test_two_studies_share_one_store(tmp_path):
    store = tmp_path / "shared"
    one = Study.from_dict({**BASE, "out": str(tmp_path / "one"), "store": str(store)}).run(progress=False)
    marker = store / "g2" / "composition"
    before = {p: p.stat().st_mtime_ns for p in marker.rglob("*") if p.is_file()}
    two = Study.from_dict(
        {
            **BASE,
            "models": ["composition", "element-random"],
            "out": str(tmp_path / "two"),
            "store": str(store),
        }
    ).run(progress=False)
    after = {p: p.stat().st_mtime_ns for p in marker.rglob("*") if p.is_file()}
    assert after == before  # composition's embeddings were read, not made again
    assert not (tmp_path / "two" / "store").exists() and (store / "g2" / "element-random").is_dir()
    key = ["model_a", "model_b", "metric", "value"]
    a = one.pairs.query("model_a == 'composition' and model_b == 'composition'")[key].reset_index(drop=True)
    b = two.pairs.query("model_a == 'composition' and model_b == 'composition'")[key].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
