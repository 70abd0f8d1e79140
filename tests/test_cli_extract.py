"""CLI: ``matteralign extract`` and ``matteralign list models``."""

from __future__ import annotations

import pytest

from matteralign.cli import main


def test_list_models_shows_every_mlip(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside table cells
    main(["list", "models"])
    out = capsys.readouterr().out
    for name in ("chgnet-0.3.0", "sevennet-0", "ani-1x", "chgnet-random", "sevennet-random"):
        assert name in out
    assert "readout_norm" in out


def test_extract_unknown_model_is_one_line_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["extract", "--dataset", "g2", "--model", "chgnet-0.3", "--store", str(tmp_path / "s")])
    assert exc.value.code == 2
    out = capsys.readouterr().err
    assert "unknown model 'chgnet-0.3'" in out and "chgnet-0.3.0" in out


@pytest.mark.models
def test_extract_writes_the_store_and_resumes(capsys, tmp_path):
    datasets = pytest.importorskip("matteralign.datasets")
    try:
        datasets.load("g2", n=12, seed=0)
    except Exception as exc:  # the dataset registry is not usable here
        pytest.skip(f"dataset 'g2' unavailable: {exc}")
    from matteralign.store import Store

    args = ["extract", "--dataset", "g2", "--model", "ani-1x", "--n", "12", "--seed", "0",
            "--store", str(tmp_path / "s"), "--shard-size", "5"]
    main(args)
    st = Store(tmp_path / "s")
    ids, X = st.read("g2", "ani-1x", "penultimate")
    skipped = st.skipped("g2", "ani-1x", "penultimate")
    assert len(ids) + len(skipped) == 12 and X.shape == (len(ids), 96)
    assert all("not supported" in r or "isolated" in r or "periodic" in r for r in skipped.values())
    capsys.readouterr()
    main(args)  # everything is there: nothing recomputed
    assert "0 shard(s) computed" in " ".join(capsys.readouterr().out.split())
