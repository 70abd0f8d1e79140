"""A study naming the study's protein, chemical and general language models runs end to end on bundled data,
with seeded random stand-ins (real architecture and depth, tiny width) in place of the checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.study import Study

pytestmark = [pytest.mark.slow, pytest.mark.models]

pytest.importorskip("transformers")


def test_language_model_study_end_to_end(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "models"))
    import hf_tiny

    ck = tmp_path / "ckpt"
    checkpoints = {
        "esm2-t6-8m": hf_tiny.esm2(ck / "esm2", layers=6),
        "prostt5": hf_tiny.prostt5(ck / "prostt5", layers=24, hidden=16),
        "chemberta": hf_tiny.roberta(ck / "chemberta", layers=3),
        "chemgpt": hf_tiny.gpt_neo(ck / "chemgpt", layers=24, hidden=16),
        "r1-llama-8b-blank": hf_tiny.causal_lm(ck / "llama", "llama", layers=32, hidden=16),
        "gpt-oss-20b-blank-atomistic": hf_tiny.causal_lm(ck / "gptoss", "gpt_oss", layers=24, hidden=16),
    }
    cfg = {
        "name": "language-models", "seed": 0, "out": str(tmp_path / "out"),
        "models": [*checkpoints, "random"],
        "checkpoints": {k: str(v) for k, v in checkpoints.items()},
        "datasets": [{"name": "proteins"}, {"name": "molecules", "n": 30}],
        "metrics": {"cknna": {"k": 5}, "unbiased_cka": {}},
        "model_metrics": {},
        "analyses": {"matrix": {"k": 5}},
    }
    study = Study.from_dict(cfg)
    study.validate()
    res = study.run(progress=False)
    pairs = res.pairs.query("metric == 'cknna'")
    on = {ds: set(pairs.query("dataset == @ds")["model_a"]) for ds in ("proteins", "molecules")}
    assert on["proteins"] == {"esm2-t6-8m", "prostt5", "random"}
    assert on["molecules"] == {"chemberta", "chemgpt", "r1-llama-8b-blank", "gpt-oss-20b-blank-atomistic", "random"}
    assert (pairs.query("dataset == 'proteins'")["n"] == 27).all()
    assert (pairs.query("dataset == 'molecules'")["n"] == 30).all()
    self_pairs = pairs.query("model_a == model_b")["value"]
    assert np.all(self_pairs > 0.999)
    html = res.report.read_text()
    assert "esm2-t6-8m" in html and "gpt-oss-20b-blank-atomistic" in html


def test_paper_model_table_study_file_names_every_family():
    from importlib import resources

    from matteralign import models
    from matteralign.errors import ConfigError

    path = resources.files("matteralign").joinpath("studies", "paper-models.toml")
    study = Study.from_toml(str(path))
    cfg = study.config
    assert len(cfg.models) == 36
    specs = [models.get_spec(m) for m in cfg.models]  # every name is registered
    needs = {s.name for s in specs if s.requires_checkpoint}
    assert needs == set(cfg.checkpoints)
    assert {s.family for s in specs} >= {"orb", "fairchem", "equiformer_v2", "mace", "pet", "geom2vec", "chemical_lm",
                                        "protein_lm", "inverse_folding", "llm", "control"}
    # here it stops at the first model that cannot run (placeholders, unbuilt environments), saying why
    with pytest.raises(ConfigError, match="cannot run here|does not exist"):
        study.validate()
