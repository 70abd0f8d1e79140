"""The study's ``lead_time_hours``: given to every weather model (kind ``weather``) and to no other."""

from __future__ import annotations

import pytest

from matteralign.errors import ConfigError
from matteralign.study import Study
from matteralign.study_runner import _options


def _study(tmp_path, extra: str):
    path = tmp_path / "s.toml"
    path.write_text('models = ["climax", "graphcast", "aurora", "grid-patch", "random"]\n'
                    f'{extra}\n[[datasets]]\nname = "weather"\n')
    return Study.from_toml(path)


def test_lead_time_goes_to_weather_models_only(tmp_path):
    cfg = _study(tmp_path, "lead_time_hours = 12").config
    assert cfg.lead_time_hours == 12.0
    for m in ("climax", "graphcast", "aurora"):
        assert _options(cfg, m)["lead_time_hours"] == 12.0
    for m in ("grid-patch", "random"):
        assert "lead_time_hours" not in _options(cfg, m)
    default = _study(tmp_path, "").config
    assert default.lead_time_hours is None and "lead_time_hours" not in _options(default, "climax")


@pytest.mark.parametrize("value", ["0", "-6", "nan", '"six"'])
def test_bad_lead_time_is_a_config_error(tmp_path, value):
    with pytest.raises(ConfigError, match="lead_time_hours"):
        _study(tmp_path, f"lead_time_hours = {value}")


def test_fixed_step_weather_models_refuse_another_lead_time(tmp_path):
    """Aurora and GraphCast run one fixed 6 h step: a study lead time other than 6 h is an error, not ignored."""
    from matteralign.errors import ModelError
    from matteralign.models.hub_aurora import AuroraExtractor

    with pytest.raises(ModelError, match="aurora runs its fixed 6 h step"):
        AuroraExtractor(checkpoint=str(tmp_path / "a.ckpt"), lead_time_hours=12)
    with pytest.raises(ModelError, match="lead_time_hours must be a number"):
        AuroraExtractor(checkpoint=str(tmp_path / "a.ckpt"), lead_time_hours="soon")
