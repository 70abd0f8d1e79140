"""``matteralign list ...``, ``env list`` and ``info``: full names in every format, plain when piped."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from matteralign.cli import main


def _run(args, capsys):
    main(args)
    return capsys.readouterr().out


@pytest.mark.parametrize("what", ["models", "metrics", "datasets"])
def test_piped_listing_is_plain_and_holds_every_full_name(what, capsys, monkeypatch):
    from matteralign import datasets, metrics, models

    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal must not cut names either
    expected = {
        "models": models.names(),
        "metrics": sorted(metrics.METRICS),
        "datasets": [i.name for i in datasets.describe()],
    }[what]
    out = _run(["list", what], capsys)  # captured stdout is not a terminal: plain, tab-separated
    lines = out.splitlines()
    assert "\t" in lines[0] and lines[0].split("\t")[0] == "name"
    assert [ln.split("\t")[0] for ln in lines[1:]] == list(expected)
    assert "…" not in out


def test_models_listing_is_compact_and_json_has_the_details(capsys):
    from matteralign import models

    out = _run(["list", "models", "--format", "plain"], capsys)
    lines = out.splitlines()
    assert lines[0].split("\t") == ["name", "family", "modality", "default layer", "layers", "runs here"]
    assert len(lines) == len(models.names()) + 1  # one line per model
    row = dict(
        zip(
            lines[0].split("\t"),
            next(ln for ln in lines if ln.startswith("chgnet-0.3.0\t")).split("\t"),
            strict=True,
        )
    )
    assert row == {
        "name": "chgnet-0.3.0",
        "family": "chgnet",
        "modality": "atoms",
        "default layer": "readout_norm",
        "layers": str(len(models.get_spec("chgnet-0.3.0").layers)),
        "runs here": "yes",
    }
    recs = json.loads(_run(["list", "models", "--format", "json"], capsys))
    mace = next(r for r in recs if r["name"] == "mace-mp")
    assert mace["env"] == "mace" and mace["requires_checkpoint"] and mace["reason"]


def test_table_on_a_narrow_terminal_keeps_full_names(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    out = _run(["list", "models", "--format", "table"], capsys)
    assert "qwen3-30b-a3b-blank-atomistic" in out and "sevennet-0-22may2024" in out and "…" not in out


def test_unknown_format_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["list", "metrics", "--format", "yaml"])
    assert exc.value.code == 2
    assert "--format must be one of" in capsys.readouterr().err


def test_env_list_plain_has_full_paths(capsys):
    from matteralign import envs

    out = _run(["env", "list"], capsys)
    paths = [ln.split("\t")[2] for ln in out.splitlines()[1:]]
    assert paths == [r["path"] for r in envs.list_envs(sizes=False)]
    assert all(len(p) > 20 and "…" not in p for p in paths)


def test_info_model(capsys):
    out = _run(["info", "chgnet-0.3.0"], capsys)
    assert "readout_norm (5, 64, invariant)  <- default" in out and "atom_embedding (0, 64" in out
    rec = json.loads(_run(["info", "sevennet-0", "--format", "json"], capsys))
    assert (
        rec["default_layer"] == "reduce_input_to_hidden" and rec["family"] == "sevennet" and rec["runs_here"]
    )
    with pytest.raises(SystemExit):
        main(["info", "chgnet-0.3"])
    assert "chgnet-0.3.0" in capsys.readouterr().err  # the close match is suggested


def test_console_script_piped_into_a_pipe():
    """The real console script writes plain lines into a pipe (no Rich table, no cut names)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from matteralign.cli import main; main()", "list", "models"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "40", "PATH": ""},
    )
    names = [ln.split("\t")[0] for ln in proc.stdout.splitlines()[1:]]
    assert "gpt-oss-20b-blank-atomistic" in names and "sevennet-0-22may2024" in names
