"""The ``matteralign compare`` and ``matteralign list metrics`` commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matteralign.cli import main
from matteralign.metrics import cknna, information_imbalance, intrinsic_dimension


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
    a, b = (np.load(p) for p in paths[:2])
    v = t[(t.model_a == "alpha") & (t.model_b == "beta")]["value"].item()
    assert v == pytest.approx(cknna(a, b, k=10), abs=1e-12)  # the same normalisation rule as the function
    assert (t["normalize"] == "l2").all()


def test_compare_output_format_follows_the_extension(tmp_path, capsys):
    paths = _write(tmp_path)
    tables = {}
    for ext in ("csv", "parquet", "json"):
        out = tmp_path / f"m.{ext}"
        main(["compare", *map(str, paths[:2]), "--out", str(out)])
        tables[ext] = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json}[ext](out)
    assert (tmp_path / "m.parquet").read_bytes()[:4] == b"PAR1"
    for ext in ("parquet", "json"):
        np.testing.assert_allclose(tables[ext]["value"], tables["csv"]["value"], rtol=1e-12)
    with pytest.raises(SystemExit):
        main(["compare", *map(str, paths[:2]), "--out", str(tmp_path / "m.txt")])
    assert "the format follows the extension" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "m.txt").exists()


def test_compare_per_metric_params(tmp_path):
    paths = _write(tmp_path)
    out = tmp_path / "p.csv"
    main(["compare", *map(str, paths[:2]), "-m", "cknna", "-m", "information_imbalance", "-m", "mutual_knn",
          "--param", "cknna.k=7", "--param", "information_imbalance.k=2", "--k", "5", "--out", str(out)])
    t = pd.read_csv(out)
    params = dict(zip(t.metric, t.params, strict=False))
    assert params == {"cknna": '{"k": 7}', "information_imbalance": '{"k": 2, "precision": "float32"}',
                      "mutual_knn": '{"k": 5}'}
    a, b = (np.load(p) for p in paths[:2])
    v = t[(t.metric == "information_imbalance") & (t.model_a == "alpha") & (t.model_b == "beta")]["value"].item()
    assert v == pytest.approx(information_imbalance(a, b, k=2), abs=1e-12)


def test_compare_npz_by_key_and_single_model_metric(tmp_path, capsys):
    paths = _write(tmp_path)
    arrs = {p.stem: np.load(p) for p in paths}
    np.savez(tmp_path / "all.npz", **arrs)
    out = tmp_path / "z.csv"
    main(["compare", f"{tmp_path}/all.npz:alpha", f"{tmp_path}/all.npz:gamma", "-m", "intrinsic_dimension",
          "-m", "cknna", "--out", str(out)])
    printed = " ".join(capsys.readouterr().out.split())
    assert "one value per input" in printed and "Traceback" not in printed
    t = pd.read_csv(out, keep_default_na=False)
    one = t[t.metric == "intrinsic_dimension"].set_index("model_a")["value"]
    assert list(one.index) == ["all:alpha", "all:gamma"]
    assert one["all:gamma"] == pytest.approx(intrinsic_dimension(arrs["gamma"]), abs=1e-12)
    main(["compare", str(tmp_path / "all.npz"), "--out", str(out)])  # every array of the archive
    assert set(pd.read_csv(out).model_a) == {"all:alpha", "all:beta", "all:gamma"}
    np.savez(tmp_path / "bad.npz", x=np.array(["a", "b"]))
    with pytest.raises(SystemExit):
        main(["compare", str(paths[0]), str(tmp_path / "bad.npz")])
    assert "expected a 2-D numeric array" in " ".join(capsys.readouterr().err.split())


def test_compare_errors_are_one_line(tmp_path, capsys):
    paths = _write(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(paths[0]), str(tmp_path / "missing.npy")])
    assert exc.value.code == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(SystemExit):
        main(["compare", *map(str, paths), "--metric", "cknna", "--k", "500"])
    assert "k=500 is too large" in " ".join(capsys.readouterr().err.split())


def test_list_metrics_shows_registry(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # wide enough that Rich does not elide names
    main(["list", "metrics"])
    printed = capsys.readouterr().out
    for name in ("cknna", "mutual_knn", "cycle_knn", "unbiased_cka", "cka_rbf"):
        assert name in printed
