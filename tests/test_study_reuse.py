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


def test_changed_analysis_code_runs_the_analyses_again(tmp_path, monkeypatch):
    """Kept analysis results are keyed on the analysis code as well as the version: changed code reruns them."""
    import matteralign.analysis as analysis
    import matteralign.study_runner as runner

    Study.from_dict({**BASE, "out": str(tmp_path / "a")}).run(progress=False, executor="inline")
    ran = []
    real = analysis.get_analysis

    def counting(name):
        fn = real(name)

        def run(*a, **k):
            ran.append(name)
            return fn(*a, **k)
        return run

    monkeypatch.setattr(analysis, "get_analysis", counting)
    Study.from_dict({**BASE, "out": str(tmp_path / "a")}).run(progress=False, executor="inline")
    assert ran == []
    monkeypatch.setattr(runner, "_analysis_code_digest", lambda: "changed")
    Study.from_dict({**BASE, "out": str(tmp_path / "a")}).run(progress=False, executor="inline")
    assert {"matrix", "tree"} <= set(ran)


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


def test_raising_n_in_place_extracts_only_the_new_samples(tmp_path, monkeypatch):
    """n = 20, then n = 40 in the same folder: each model embeds just the 20 new samples (subsamples are
    nested), and the n = 40 numbers equal those of a fresh n = 40 study."""
    import matteralign.execute as execute

    planned: dict[str, list[str]] = {}
    plan = execute.plan_extraction

    def counting(store, dataset, model, **kw):
        job, units = plan(store, dataset, model, **kw)
        planned.setdefault(model, []).extend(s.id for u in units for s in u.samples)
        return job, units

    monkeypatch.setattr(execute, "plan_extraction", counting)
    cfg = {**BASE, "out": str(tmp_path / "a")}
    small = Study.from_dict({**cfg, "datasets": [{"name": "g2", "n": 20}]}).run(progress=False)
    first = dict(planned)
    planned.clear()
    large = Study.from_dict({**cfg, "datasets": [{"name": "g2", "n": 40}]}).run(progress=False)
    assert sorted(first) == sorted(planned) == sorted(BASE["models"])
    for model in BASE["models"]:
        assert len(first[model]) == 20 and len(planned[model]) == 20  # only the new samples
        assert not set(first[model]) & set(planned[model])
    assert set(small.pairs["n"]) == {20} and set(large.pairs["n"]) == {40}
    planned.clear()
    fresh = Study.from_dict({**BASE, "out": str(tmp_path / "fresh")}).run(progress=False)
    assert all(len(ids) == 40 for ids in planned.values())
    key = ["model_a", "model_b", "metric", "params", "n", "value", "p_value", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(large.pairs[key], fresh.pairs[key])
    # another seed is another study in that folder: refused, as before
    from matteralign.errors import ConfigError

    with pytest.raises(ConfigError, match="different study"):
        Study.from_dict({**cfg, "seed": 1}).run(progress=False)
