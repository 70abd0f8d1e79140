"""A study's warnings (driver and workers) are shown once at the end, by kind, and kept in the report."""

from __future__ import annotations

import json

import pytest

from matteralign.study import Study

pytestmark = pytest.mark.slow


def test_warnings_are_counted_once_and_reported(tmp_path, capsys):
    cfg = {
        "name": "warned",
        "seed": 0,
        "out": str(tmp_path / "w"),
        # composition gives isomers identical rows: TwoNN drops those duplicates with a warning (in a worker)
        "models": ["composition", "random"],
        "datasets": [{"name": "g2", "n": 80}],
        "metrics": {"cknna": {"k": 5}},
        "model_metrics": {"intrinsic_dimension": [{"method": "twonn"}]},
        "analyses": {"matrix": {"k": 5}},
        "execution": {"executor": "local", "workers": 1},
    }
    res = Study.from_dict(cfg).run(progress=True)
    err = capsys.readouterr().err
    rows = json.loads((tmp_path / "w" / "results" / "warnings.json").read_text())
    dup = [r for r in rows if "duplicate" in r["kind"].lower() or "distance 0" in r["example"]]
    assert dup and dup[0]["count"] >= 1 and dup[0]["source"].startswith("intrinsic_dim.py")
    summary = [ln for ln in err.splitlines() if "warning(s) of" in ln]
    assert len(summary) == 1  # one summary, after the stages
    assert err.rindex("warning(s) of") > err.rindex("report")
    assert "UserWarning" not in err.split("warning(s) of")[0]  # nothing printed between the progress bars
    html = res.report.read_text()
    assert "Warnings during the run" in html and dup[0]["kind"].split(": ", 1)[1][:30] in html
