"""The store's plan holds what of a model's options decides its features: a layer made with another seed, lead
time or checkpoint (the same path, other contents) is never reused for these options."""

from __future__ import annotations

import pytest

from matteralign import datasets
from matteralign.errors import StoreError
from matteralign.execute import extract, plan_extraction
from matteralign.execute.extraction import model_plan
from matteralign.store import Store


@pytest.fixture
def ds():
    return datasets.load("molecules").subsample(12, seed=0)


def test_neutral_options_are_left_out_and_a_checkpoint_is_read_by_contents(tmp_path):
    ck = tmp_path / "model.pt"
    ck.write_bytes(b"a" * 3_000_000)
    plan = model_plan({"checkpoint": str(ck), "seed": 0, "device": "cpu", "trust_checkpoint": True, "batch_size": 8})
    assert set(plan) == {"checkpoint", "seed"} and plan["checkpoint"]["size"] == 3_000_000
    moved = tmp_path / "elsewhere.pt"
    ck.rename(moved)
    assert model_plan({"checkpoint": str(moved), "seed": 0}) == {k: plan[k] for k in ("checkpoint", "seed")}
    moved.write_bytes(b"a" * 2_999_999 + b"b")  # same size, other weights (in the last MiB)
    assert model_plan({"checkpoint": str(moved)})["checkpoint"] != plan["checkpoint"]


def test_a_layer_made_with_another_seed_is_refused_not_reused(tmp_path, ds):
    extract(tmp_path / "s", ds, "random", options={"seed": 0}, progress=False, workers=1)
    first = Store(tmp_path / "s").read(ds.name, "random", "gaussian")
    # the same seed: nothing to compute; another seed: the stored layer does not answer for it
    job, todo = plan_extraction(Store(tmp_path / "s"), ds, "random", layers=("gaussian",), options={"seed": 0})
    assert todo == []
    with pytest.raises(StoreError, match="model_options"):
        plan_extraction(Store(tmp_path / "s"), ds, "random", layers=("gaussian",), options={"seed": 1})
    assert Store(tmp_path / "s").read(ds.name, "random", "gaussian")[0] == first[0]
