"""End-to-end study runs: tables, report, resume after an interruption, guards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matteralign.errors import ConfigError
from matteralign.study import Study

pytestmark = pytest.mark.slow

SMALL = {
    "name": "small",
    "seed": 0,
    "models": ["composition", "random", "element-random"],
    "datasets": [{"name": "g2", "n": 40}],
    "metrics": {"cknna": {"k": 5}, "mutual_knn": {"k": 5}, "unbiased_cka": {}, "dcor2": {},
                "information_imbalance": {"k": 1}},
    "model_metrics": {"intrinsic_dimension": [{"method": "twonn"}]},
    "analyses": {"matrix": {"k": 5}, "dimension": {}},
}


def _run(tmp_path, name, **over):
    cfg = {**SMALL, "out": str(tmp_path / name), **over}
    return Study.from_dict(cfg).run(progress=False)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("dataset", "model_a", "model_b", "model", "metric", "params") if c in df]
    return df.drop(columns=[c for c in ("time",) if c in df]).sort_values(keys).reset_index(drop=True)


def test_small_study_tables_report_and_resume(tmp_path, monkeypatch):
    ref = _run(tmp_path, "ref")
    pairs = ref.pairs
    assert set(pairs["metric"]) == {"cknna", "mutual_knn", "unbiased_cka", "dcor2", "information_imbalance"}
    # 3 models -> 9 ordered pairs per metric (self pairs included)
    assert (pairs.groupby("metric").size() == 9).all()
    self_cknna = pairs.query("metric == 'cknna' and model_a == model_b")["value"]
    assert np.all((self_cknna > 0.999) & (self_cknna < 1.0))  # +1e-6 in the denominator, as platonic-rep
    assert (pairs["normalize"] == "l2").all() and (pairs["n"] == 40).all()
    assert (ref.out / "results" / "pairs.csv").exists() and (ref.out / "results" / "per_model.parquet").exists()
    html = ref.report.read_text()
    assert "Alignment matrices" in html and "small" in html

    # Ctrl-C on the driver while it commits the second shard: the store stays consistent and a rerun
    # resumes to identical results
    from matteralign.execute.commit import Committer

    calls = {"n": 0}
    original = Committer._commit_shard

    def flaky(self, unit, result):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, unit, result)

    monkeypatch.setattr(Committer, "_commit_shard", flaky)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed")
    monkeypatch.setattr(Committer, "_commit_shard", original)
    again = _run(tmp_path, "resumed")
    pd.testing.assert_frame_equal(_sorted(again.pairs), _sorted(ref.pairs), check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(_sorted(again.per_model), _sorted(ref.per_model), check_exact=False, rtol=1e-12)

    # a second run of a finished study reuses everything and gives the same tables
    third = _run(tmp_path, "resumed")
    pd.testing.assert_frame_equal(_sorted(third.pairs), _sorted(ref.pairs))


def test_out_dir_of_another_study_is_refused_and_untouched(tmp_path):
    _run(tmp_path, "a")
    marker = (tmp_path / "a" / "study.toml").read_text()
    with pytest.raises(ConfigError, match="different study"):
        _run(tmp_path, "a", seed=1)
    assert (tmp_path / "a" / "study.toml").read_text() == marker


@pytest.mark.parametrize(
    "over, match",
    [
        ({"models": ["chgnet-9.9"]}, "unknown model 'chgnet-9.9'"),
        ({"datasets": [{"name": "g3"}]}, "unknown dataset 'g3'"),
        ({"metrics": {"cknnaa": {}}}, "unknown metric 'cknnaa'"),
        ({"analyses": {"matrx": {}}}, "unknown analysis 'matrx'"),
        ({"datasets": [{"name": "s22", "n": 500}]}, "larger than the dataset"),
    ],
)
def test_bad_names_fail_before_any_work(tmp_path, over, match):
    from matteralign.errors import MatterAlignError

    with pytest.raises(MatterAlignError, match=match):
        _run(tmp_path, "bad", **over)
    store = tmp_path / "bad" / "store"
    assert not store.exists()


def test_incompatible_store_fails_before_any_work(tmp_path):
    import zarr

    from matteralign.errors import StoreError

    foreign = tmp_path / "foreign"
    zarr.open_group(str(foreign), mode="w").attrs["format"] = "something else"
    with pytest.raises(StoreError, match="marker"):
        _run(tmp_path, "c", store=str(foreign))
    assert not (tmp_path / "c").exists()
    old = tmp_path / "old"
    zarr.open_group(str(old), mode="w").attrs["matteralign_store"] = 999
    with pytest.raises(StoreError, match="format version 999"):
        _run(tmp_path, "d", store=str(old))


def test_unknown_metric_parameter_fails_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics\.dcor2: unknown parameter\(s\) \['k'\]"):
        _run(tmp_path, "p", metrics={"dcor2": {"k": 5}})
    assert not (tmp_path / "p").exists()
