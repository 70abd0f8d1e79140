"""The ``matteralign compare`` and ``matteralign list metrics`` commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matteralign.cli import main
from matteralign.metrics import cknna, normalize


def _write(tmp_path, n=150):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((n, 4))
    paths = []
    for name, d in (("alpha", 12), ("beta", 9), ("gamma", 7)):
        p = tmp_path / f"{name}.npy"
        np.save(p, (Z @ rng.standard_normal((4, d)) + 0.5 * rng.standard_normal((n, d))).astype(np.float32))
        paths.append(p)
    return paths


def test_compare_prints_matrix_and_writes_csv(tmp_path, capsys):
    paths = _write(tmp_path)
    out = tmp_path / "res" / "matrix.csv"
    main(["compare", *map(str, paths), "--metric", "cknna", "--k", "10", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "alpha" in printed and "gamma" in printed and "cknna" in printed
    t = pd.read_csv(out)
    assert len(t) == 9 and set(t.metric) == {"cknna"}
    a, b = (normalize(np.load(p)) for p in paths[:2])
    v = t[(t.model_a == "alpha") & (t.model_b == "beta")]["value"].item()
    assert v == pytest.approx(cknna(a, b, k=10), abs=1e-9)


def test_compare_errors_are_one_line(tmp_path, capsys):
    paths = _write(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(paths[0]), str(tmp_path / "missing.npy")])
    assert exc.value.code == 2
    assert "does not exist" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["compare", *map(str, paths), "--metric", "cknna", "--k", "500"])
    assert "k=500 is too large" in " ".join(capsys.readouterr().out.split())


def test_list_metrics_shows_registry(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # wide enough that Rich does not elide names
    main(["list", "metrics"])
    printed = capsys.readouterr().out
    for name in ("cknna", "mutual_knn", "cycle_knn", "unbiased_cka", "cka_rbf"):
        assert name in printed
