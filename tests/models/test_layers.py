"""Several layers in one forward pass, layers in forward order with depth and width, ``expand_layers``."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign import models
from matteralign.errors import InputError, UnknownNameError
from matteralign.models import Extractor, ModelSpec
from matteralign.samples import Sample


class Counting(Extractor):
    """No one-pass capture: the base class runs one pass per layer; counts the passes."""

    name = "counting-test"
    family = "test"
    modality = "text"
    default_layer = "b"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def layers(self):
        return ["a", "b", "c"]

    def _embed(self, inputs, layer):
        self.calls.append(layer)
        k = "abc".index(layer) + 1
        return [np.array([[len(s) * k, k]], dtype=np.float64) for s in inputs]


def test_base_fallback_runs_one_pass_per_layer_and_keeps_ids():
    ex = Counting(batch_size=1)
    samples = [Sample("x", text="abc"), Sample("y", smiles="C"), Sample("z", text="de")]
    ids, arrays, skipped = ex.embed_samples_layers(samples, ["c", "a", "c"])
    assert ids == ["x", "z"] and skipped == {"y": "no 'text' view"}
    assert list(arrays) == ["a", "c"]  # forward order, duplicates dropped
    np.testing.assert_array_equal(np.vstack(arrays["c"]), [[9, 3], [6, 3]])
    np.testing.assert_array_equal(np.vstack(arrays["a"]), [[3, 1], [2, 1]])
    assert ex.calls == ["a", "a", "c", "c"]  # one pass per layer and batch of one
    assert [a.dtype for a in arrays["a"]] == [np.float32, np.float32]


def test_unknown_layer_names_the_valid_ones_in_forward_order():
    ex = Counting()
    with pytest.raises(UnknownNameError, match=r"Layers in forward order: a, b, c \(or 'all'\)"):
        ex.embed_samples_layers([Sample("x", text="abc")], ["a", "d"])
    with pytest.raises(UnknownNameError, match="Layers in forward order: a, b, c"):
        ex.embed([" x"], layer="zz")
    with pytest.raises(InputError, match="non-empty list"):
        ex.embed_samples_layers([Sample("x", text="abc")], [])


def test_expand_layers_on_the_registry():
    spec = models.get_spec("chgnet-0.3.0")
    assert models.expand_layers(spec, None) == ["readout_norm"]
    assert models.expand_layers(spec, "all") == [
        "atom_embedding", "atom_conv_layers.0", "atom_conv_layers.1", "atom_conv_layers.2", "atom_conv_layers.3",
        "readout_norm", "mlp.layers.5"]
    assert models.expand_layers("chgnet-0.3.0", ["mlp.layers.5", "atom_embedding", "mlp.layers.5"]) == [
        "atom_embedding", "mlp.layers.5"]
    with pytest.raises(UnknownNameError) as err:
        models.expand_layers(spec, ["readout_nrm"])
    msg = str(err.value)
    assert "Did you mean 'readout_norm'" in msg
    assert msg.index("atom_embedding") < msg.index("atom_conv_layers.0") < msg.index("readout_norm, mlp")
    with pytest.raises(InputError, match="empty"):
        models.expand_layers(spec, [])
    with pytest.raises(InputError, match="layer name"):
        models.expand_layers(spec, 3)
    # "all" leaves out exact aliases (SevenNet's last_block.scalars is block4.scalars)
    sn = models.get_spec("sevennet-0")
    assert "last_block.scalars" in sn.layers and "last_block.scalars" not in models.expand_layers(sn, "all")
    assert models.expand_layers(sn, ["last_block.scalars"]) == ["last_block.scalars"]


def test_spec_layer_info_and_validation():
    info = models.get_spec("sevennet-0").layer_info()
    assert [(li.name, li.depth, li.width) for li in info][-4:] == [
        ("last_block.equivariant_norms", 3, 96), ("block4.scalars", 4, 128), ("last_block.scalars", 4, 128),
        ("reduce_input_to_hidden", 5, 64)]
    depths = [li.depth for li in info]
    assert depths == sorted(depths)
    rows = {r["name"]: r for r in models.info()}
    assert rows["minilm-smiles"]["layers"][:2] == ["hidden_0", "hidden_1"]
    assert rows["minilm-smiles"]["depths"] == [0, 1, 2, 3, 4, 5, 6, 6]
    with pytest.raises(InputError, match="forward order"):
        ModelSpec(name="bad", factory=Counting, family="t", modality="text", layers=("a", "b"), default_layer="a",
                  depths=(1, 0))
    with pytest.raises(InputError, match="2 widths for 3 layers"):
        ModelSpec(name="bad", factory=Counting, family="t", modality="text", layers=("a", "b", "c"),
                  default_layer="a", widths=(1, 2))
    with pytest.raises(InputError, match="aliases"):
        ModelSpec(name="bad", factory=Counting, family="t", modality="text", layers=("a",), default_layer="a",
                  aliases={"a": "z"})


# ---------------------------------------------------------------- real models: one pass == separate passes
def _atoms_samples():
    ase_build = pytest.importorskip("ase.build")
    mols = [ase_build.molecule(m) for m in ("CH3CH2OH", "H2O", "C6H6", "CH3CONH2", "CH4")]
    cu = ase_build.bulk("Cu", "fcc", a=3.6)
    nacl = ase_build.bulk("NaCl", "rocksalt", a=5.64)
    return [Sample(f"s{i}", atoms=a) for i, a in enumerate([*mols, cu, nacl])]


def _string_samples():
    smiles = ["CCO", "O", "c1ccccc1", "CC(N)=O", "C", "CCCCCCCCN", "", "OCC(O)CO"]
    return [Sample(f"s{i}", smiles=s) for i, s in enumerate(smiles)]


@pytest.mark.models
@pytest.mark.parametrize("name", ["chgnet-0.3.0", "sevennet-0", "ani-1x", "minilm-smiles", "rxnfp-bert"])
def test_one_pass_equals_separate_extractions_bit_for_bit(name):
    pytest.importorskip("torch")
    if models.get_spec(name).unavailable_reason():
        pytest.skip(models.get_spec(name).unavailable_reason())
    ex = models.load(name, num_threads=1, batch_size=3)
    assert type(ex)._embed_layers is not Extractor._embed_layers  # the one-pass path is under test
    samples = _atoms_samples() if ex.modality == "atoms" else _string_samples()
    ids, multi, skipped = ex.embed_samples_layers(samples, "all")
    assert list(multi) == [li.name for li in ex.layer_info() if li.alias_of is None]
    for li in ex.layer_info():
        sids, single, sskipped = ex.embed_samples(samples, layer=li.name)
        assert sids == ids and sskipped == skipped
        assert single[0].shape[1] == li.width  # the registered width is the real one
        if li.alias_of is None:
            assert len(single) == len(multi[li.name])
            for a, b in zip(single, multi[li.name], strict=True):
                assert a.dtype == b.dtype == np.float32
                np.testing.assert_array_equal(a, b)
        else:
            for a, b in zip(single, multi[li.alias_of], strict=True):
                np.testing.assert_array_equal(a, b)
    # layers differ from one another (the hooks are on different modules)
    names = list(multi)
    assert not np.array_equal(multi[names[0]][0][:, :8], multi[names[-1]][0][:, :8])


def test_python_extract_takes_all_for_an_extractor_instance(tmp_path):
    from matteralign.execute import extract
    from matteralign.samples import Dataset
    from matteralign.store import Store

    ex = Counting(batch_size=2)
    ds = Dataset("toy", [Sample(f"s{i}", text="x" * (i + 1)) for i in range(6)])
    summary = extract(tmp_path / "s", ds, ex, layers=["all"], progress=False, executor="inline")
    assert list(summary["layers"]) == ["a", "b", "c"]
    ids, X = Store(tmp_path / "s").read("toy", "counting-test", "c")
    np.testing.assert_array_equal(X[:, 0], 3 * np.arange(1, 7))
