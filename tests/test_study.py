"""Study files: validation, overrides, the output-folder guard and the default study."""

from __future__ import annotations

import tomllib

import pytest

from matteralign.errors import ConfigError
from matteralign.study import Study, default_study_text

MINIMAL = {"datasets": [{"name": "g2", "n": 20}], "models": ["composition", "random"]}


def test_default_study_parses_and_names_both_datasets():
    study = Study.from_toml(None)
    names = [d.name for d in study.config.datasets]
    assert names == ["molecules", "crystals"]
    assert "cknna" in study.config.metrics and study.config.metrics["cknna"] == {"k": 25}
    assert tomllib.loads(default_study_text())["normalize"] == "l2"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"datasets\.0\.sampels: unknown key"):
        Study.from_dict({**MINIMAL, "datasets": [{"name": "g2", "sampels": 3}]})


def test_bad_value_is_named_with_the_value():
    with pytest.raises(ConfigError, match=r"normalize: .*l2.*got 'L3'"):
        Study.from_dict({**MINIMAL, "normalize": "L3"})
    with pytest.raises(ConfigError, match=r"datasets\.0\.n"):
        Study.from_dict({**MINIMAL, "datasets": [{"name": "g2", "n": 2}]})


def test_missing_key_and_duplicates():
    with pytest.raises(ConfigError, match="models: required key is missing"):
        Study.from_dict({"datasets": [{"name": "g2"}]})
    with pytest.raises(ConfigError, match="listed twice"):
        Study.from_dict({**MINIMAL, "models": ["random", "random"]})


def test_not_toml_and_missing_file(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text("models = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Study.from_toml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        Study.from_toml(tmp_path / "nope.toml")


def test_overrides_apply_and_keep_validation():
    s = Study.from_dict(MINIMAL).override(models=["random"], n=10, seed=3, out="x", datasets=["g2", "s22"])
    assert s.config.models == ["random"]
    assert [d.name for d in s.config.datasets] == ["g2", "s22"]
    assert all(d.n == 10 for d in s.config.datasets)
    assert s.config.seed == 3 and s.config.out == "x"
    with pytest.raises(ConfigError):
        Study.from_dict(MINIMAL).override(n=1)


def test_digest_ignores_output_location_but_not_parameters():
    a = Study.from_dict(MINIMAL)
    assert a.config.digest() == a.override(out="elsewhere").config.digest()
    assert a.config.digest() != a.override(seed=1).config.digest()


def test_toml_round_trip():
    s = Study.from_toml(None)
    again = Study.from_dict(tomllib.loads(s.to_toml()))
    assert again.config == s.config
