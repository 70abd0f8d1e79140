"""A study that cannot compute some requested numbers says what and why, and exits non-zero unless it allows it."""

from __future__ import annotations

import pytest

from matteralign.cli import EXIT_INCOMPLETE, main
from matteralign.errors import InputError

STUDY = """
models = ["composition", "random"]
out = "{out}"
analyses = {{ matrix = {{ k = 5 }} }}
{extra}
[execution]
executor = "inline"

[[datasets]]
name = "g2"
n = 12
"""


def _write(tmp_path, name, extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(out=tmp_path / name, extra=extra))
    return path


def _run(argv, capsys):
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, " ".join(capsys.readouterr().err.split())


def test_missing_numbers_are_listed_and_fail_the_run(tmp_path, capsys):
    code, err = _run(["run", str(_write(tmp_path, "strict"))], capsys)
    assert code == EXIT_INCOMPLETE == 3
    # the default cknna k = 25 cannot run on 12 samples: every pair, with the metric's own reason
    assert "6 requested number(s) could not be computed" in err
    assert ('g2 · cknna {"k": 25}: composition × composition, composition × random, random × composition, '
            "random × random — InputError: k=25 is too large for 12 samples") in err
    # TwoNN uses two neighbours and runs; the MLE's k = 50 cannot
    assert 'g2 · intrinsic_dimension {"k": 50, "method": "mle"}: composition, random' in err
    assert '"method": "twonn"' not in err
    assert "exit status 3" in err and "allow_partial" in err and "Traceback" not in err
    assert (tmp_path / "strict" / "report" / "index.html").exists()  # what could be computed is kept


def test_allow_partial_exits_zero_and_still_tells(tmp_path, capsys):
    code, err = _run(["run", str(_write(tmp_path, "partial", "allow_partial = true"))], capsys)
    assert code == 0
    assert "6 requested number(s) could not be computed" in err and "exit status" not in err


def test_a_failed_analysis_is_reported_and_fails_the_run(tmp_path, capsys, monkeypatch):
    from matteralign.analysis import ANALYSES, get_analysis

    get_analysis("matrix")

    def broken(ctx):
        raise InputError("matrix cannot be drawn for this study")

    monkeypatch.setitem(ANALYSES, "matrix", broken)
    study = _write(tmp_path, "broken", 'metrics = { mutual_knn = { k = 3 } }\nmodel_metrics = {}')
    code, err = _run(["run", str(study)], capsys)
    assert code == 3
    assert "incomplete: 1 analysis(es) failed:" in err
    assert "analysis matrix failed: matrix cannot be drawn for this study" in err


@pytest.mark.parametrize("extra", ["allow_partial = true", ""])
def test_allow_partial_is_not_part_of_the_digest(tmp_path, extra):
    import tomllib

    from matteralign.study import Study

    text = STUDY.format(out=tmp_path / "x", extra=extra)
    assert Study.from_dict(tomllib.loads(text)).config.digest() == Study.from_dict(
        tomllib.loads(STUDY.format(out=tmp_path / "x", extra=""))).config.digest()
