"""Which datasets a model reads (views it needs), why a study leaves a pair out, and what a checkpoint makes
runnable."""

from __future__ import annotations

import pytest

from matteralign import datasets, models
from matteralign.execute import placement
from matteralign.study_runner import _not_read, _reads


@pytest.mark.parametrize("model", ["proteinmpnn", "esm-if1"])
def test_protein_structure_models_read_proteins_only(model):
    """A structure model of proteins reads atoms *with* a sequence: protein chains, not molecules or crystals
    (whose atoms it would skip one by one, leaving the study's numbers missing)."""
    spec = models.get_spec(model)
    assert spec.needs_views == ("sequence",)
    assert _reads(spec, datasets.load("proteins", n=3))
    assert not _reads(spec, datasets.load("molecules", n=20))
    assert not _reads(spec, datasets.load("crystals", n=20))
    # an interatomic potential reads all three; a protein language model proteins only
    assert all(_reads(models.get_spec("chgnet-0.3.0"), datasets.load(d, n=3)) for d in ("proteins", "molecules"))
    assert not _reads(models.get_spec("esm2-t6-8m"), datasets.load("molecules", n=20))


def test_the_study_records_why_a_model_skips_a_dataset():
    from matteralign.study import Study

    study = Study.from_dict({"name": "r", "models": ["proteinmpnn", "composition", "chemberta"],
                             "checkpoints": {"chemberta": "/nowhere"},
                             "datasets": [{"name": "molecules", "n": 10}, {"name": "proteins", "n": 4}]})
    ds = {"molecules": datasets.load("molecules", n=10), "proteins": datasets.load("proteins", n=4)}
    reasons = _not_read(study.config, ds)
    assert set(reasons) == {"molecules/proteinmpnn", "proteins/chemberta"}
    assert reasons["molecules/proteinmpnn"].startswith("reads atoms with sequence; the samples carry atoms")
    assert "sequence" not in reasons["molecules/proteinmpnn"].split(";")[1]
    assert reasons["proteins/chemberta"].startswith("reads smiles; the samples carry")


def test_a_checkpoint_makes_runnable_only_what_lacked_just_a_checkpoint():
    """Giving a checkpoint lifts "needs a local checkpoint", never another reason that mentions checkpoints."""
    assert placement.unavailable_reason("chemberta") == models._registry.NEEDS_CHECKPOINT
    assert placement.unavailable_reason("chemberta", checkpoint_given=True) is None
    reason = placement.unavailable_reason("geom2vec", checkpoint_given=True)
    assert reason and "checkpoint" in reason and "no PyPI package" in reason
