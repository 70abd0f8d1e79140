"""Tests of the interatomic-potential adapters (CHGNet, SevenNet, ANI-1x, random controls).

Every adapter is checked against an independent forward hook on the same model, against its
published energy sanity value, for rotation/translation invariance of its invariant layers, for
bit-identical reruns (random controls included), and for clear errors on bad input.
"""

from __future__ import annotations

import numpy as np
import pytest

from matteralign import models
from matteralign.errors import InputError, MatterAlignError, ModelError, UnknownNameError
from matteralign.execute import extract
from matteralign.samples import Sample

pytestmark = pytest.mark.models

ase_build = pytest.importorskip("ase.build")
torch = pytest.importorskip("torch")

MLIPS = ["chgnet-0.3.0", "sevennet-0", "ani-1x"]
CONTROLS = ["chgnet-random", "sevennet-random"]


def _structures(name: str):
    """A few small structures the model supports (molecules for ANI, molecules + crystals otherwise)."""
    mols = [ase_build.molecule(m) for m in ("CH3CH2OH", "H2O", "C6H6", "CH3CONH2")]
    if name.startswith("ani"):
        return mols
    cu = ase_build.bulk("Cu", "fcc", a=3.6)
    nacl = ase_build.bulk("NaCl", "rocksalt", a=5.64)
    si = ase_build.bulk("Si", "diamond", a=5.43) * (2, 1, 1)
    si.rattle(0.05, seed=1)
    return [cu, nacl, si, *mols]


_cache: dict[str, models.Extractor] = {}


def _load(name: str):
    if name not in _cache:
        _cache[name] = models.load(name, batch_size=4)
    return _cache[name]


def _reference_hook(ex, atoms_list):
    """Independent per-atom features of the default layer: our own hook, our own forward call."""
    out = []
    if ex.family == "chgnet":
        from pymatgen.io.ase import AseAtomsAdaptor

        from matteralign.models._atoms import boxed

        got = []
        h = ex.model.readout_norm.register_forward_hook(lambda m, i, o: got.append(o.detach().clone()))
        try:
            for a in atoms_list:
                s = AseAtomsAdaptor.get_structure(boxed(a, gap=16.0))
                ex.model.predict_structure(s, task="e")  # the model's own API, one structure at a time
        finally:
            h.remove()
        return [g.numpy() for g in got]
    if ex.family == "sevennet":
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.data import Batch

        got = []
        mod = dict(ex.model.named_children())["reduce_input_to_hidden"]
        h = mod.register_forward_hook(lambda m, i, o: got.append(o[KEY.NODE_FEATURE].detach().clone()))
        try:  # same batches as the adapter (batch_size=4): scatter sums are then in the same order
            for start in range(0, len(atoms_list), 4):
                chunk = atoms_list[start:start + 4]
                graphs = [AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, ex.cutoff)) for a in chunk]
                with torch.no_grad():
                    ex.model(Batch.from_data_list(graphs))
        finally:
            h.remove()
        return list(np.split(torch.cat(got).numpy(), np.cumsum([len(a) for a in atoms_list])[:-1]))
    # ANI: the notes' recipe, net[:-1] on each element's AEVs, one molecule at a time
    m = ex.model
    for a in atoms_list:
        Z = torch.tensor(a.get_atomic_numbers()).unsqueeze(0)
        R = torch.tensor(a.get_positions(), dtype=torch.float32).unsqueeze(0)
        with torch.no_grad():
            sp, aev = m.aev_computer(m.species_converter((Z, R)))
            f = aev.new_zeros(len(a), 96)
            for i, net in enumerate(m.neural_networks.values()):
                mask = sp[0] == i
                if mask.any():
                    f[mask] = net[:-1](aev[0][mask])
        out.append(f.numpy())
    return out


@pytest.mark.parametrize("name", MLIPS)
def test_default_layer_equals_independent_hook(name):
    ex = _load(name)
    atoms = _structures(name)
    ours = ex.embed(atoms)
    ref = _reference_hook(ex, atoms)
    assert len(ours) == len(ref) == len(atoms)
    for a, x, y in zip(atoms, ours, ref, strict=True):
        assert x.dtype == np.float32
        assert x.shape == (len(a), {"chgnet": 64, "sevennet": 64, "ani": 96}[ex.family])
        assert np.abs(x - y).max() <= 1e-6


@pytest.mark.parametrize("name", MLIPS)
def test_pooled_is_mean_of_atoms(name, tmp_path):
    from matteralign.samples import Dataset
    from matteralign.store import Store

    ex = _load(name)
    atoms = _structures(name)[:3]
    ds = Dataset("t", [Sample(f"t:{i}", atoms=a) for i, a in enumerate(atoms)])
    st = Store(tmp_path / "s")
    extract(st, ds, ex, progress=False)
    ids, X = st.read("t", ex.name, ex.default_layer)
    per_atom = ex.embed(atoms)
    assert ids == ds.ids
    np.testing.assert_allclose(X, np.stack([p.astype(np.float64).mean(0) for p in per_atom]), atol=1e-6)


@pytest.mark.parametrize(
    ("name", "atoms", "per_atom", "expected", "tol"),
    [
        ("chgnet-0.3.0", lambda: ase_build.bulk("Cu", "fcc", a=3.6), True, -4.08, 0.01),
        ("sevennet-0", lambda: ase_build.bulk("Cu", "fcc", a=3.6), True, -4.10, 0.01),
    ],
)
def test_energy_sanity_values(name, atoms, per_atom, expected, tol):
    a = atoms()
    e = _load(name).predict_energy([a])
    assert e.shape == (1,)
    assert e[0] / len(a) == pytest.approx(expected, abs=tol)


def test_ani_ethanol_energy():
    ex = _load("ani-1x")
    e_ha = ex.predict_energy([ase_build.molecule("CH3CH2OH")], unit="Ha")
    assert e_ha[0] == pytest.approx(-154.99, abs=0.01)
    from ase.units import Hartree

    assert ex.predict_energy([ase_build.molecule("CH3CH2OH")])[0] == pytest.approx(e_ha[0] * Hartree, rel=1e-9)


def test_energy_batched_equals_single():
    ex = _load("chgnet-0.3.0")
    atoms = _structures("chgnet")
    batched = ex.predict_energy(atoms)
    single = np.array([ex.predict_energy([a])[0] for a in atoms])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def _moved(a, seed=0):
    from scipy.spatial.transform import Rotation

    b = a.copy()
    rot = Rotation.random(random_state=seed).as_matrix()
    b.set_positions(b.get_positions() @ rot.T + np.array([1.3, -2.1, 0.7]))
    if b.get_pbc().all():
        b.set_cell(b.cell.array @ rot.T)
    return b


@pytest.mark.parametrize("name", MLIPS + CONTROLS)
def test_invariant_layers_under_rotation_and_translation(name):
    ex = _load(name)
    atoms = _structures(name)[:5]
    # the default layer, the earliest and the last listed invariant layers (every forward costs)
    invariant = [lay for lay in ex.layers() if lay != "last_block.equivariant"]
    layers = list(dict.fromkeys([ex.default_layer, invariant[1], invariant[-1]]))
    if "last_block.equivariant_norms" in invariant:
        layers.append("last_block.equivariant_norms")
    for layer in layers:
        x = ex.embed(atoms, layer=layer)
        y = ex.embed([_moved(a, seed=i) for i, a in enumerate(atoms)], layer=layer)
        for xi, yi in zip(x, y, strict=True):
            assert np.abs(xi - yi).max() <= 1e-4, layer


def test_sevennet_equivariant_layer_rotates():
    ex = _load("sevennet-0")
    a = ase_build.molecule("CH3CH2OH")
    x = ex.embed([a], layer="last_block.equivariant")[0]
    y = ex.embed([_moved(a)], layer="last_block.equivariant")[0]
    n = ex.embed([a], layer="last_block.equivariant_norms")[0]
    assert x.shape == (9, 64 * 3 + 32 * 5) and n.shape == (9, 96)
    assert np.abs(x - y).max() > 1e-2  # equivariant features do change under rotation
    # and the first l = 1 channel's norm is what the norms layer reports
    np.testing.assert_allclose(np.linalg.norm(x[:, :3], axis=1), n[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MLIPS + CONTROLS)
def test_same_seed_bit_identical(name):
    atoms = _structures(name)[:4]
    a = models.load(name, seed=0).embed(atoms)
    b = models.load(name, seed=0).embed(atoms)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("name", CONTROLS)
def test_random_controls_differ_from_pretrained_and_by_seed(name):
    atoms = _structures(name)[:2]
    pre = _load({"chgnet-random": "chgnet-0.3.0", "sevennet-random": "sevennet-0"}[name]).embed(atoms)
    r0 = models.load(name, seed=0).embed(atoms)
    r1 = models.load(name, seed=1).embed(atoms)
    for p, x, y in zip(pre, r0, r1, strict=True):
        assert np.isfinite(x).all()
        assert np.abs(p - x).max() > 1e-2
        assert np.abs(x - y).max() > 1e-3


def test_layers_and_shapes():
    a = ase_build.molecule("CH3CH2OH")
    ch = _load("chgnet-0.3.0")
    assert ch.default_layer == "readout_norm" and ch.layers()[-2:] == ["readout_norm", "mlp.layers.5"]
    assert all(ch.embed([a], layer=lay)[0].shape == (9, 64) for lay in ch.layers())
    sn = _load("sevennet-0")
    assert sn.embed([a], layer="last_block.scalars")[0].shape == (9, 128)
    assert _load("ani-1x").embed([a], layer="aev")[0].shape == (9, 384)


def test_chgnet_molecule_box_and_isolated_atom():
    ex = _load("chgnet-0.3.0")
    assert "isolated" in ex.unsupported_reason(Sample("h", atoms=ase_build.molecule("H")))
    prov = ex.provenance()
    assert prov["vacuum_beyond_cutoff"] == 10.0 and "box" in prov["molecules"]
    assert prov["weights_sha256"] and prov["package_version"] == "0.4.2" and prov["n_parameters"] == 412525
    # a molecule gives the same features wherever it sits (the box is big enough: no self-interaction)
    m = ase_build.molecule("C6H6")
    m2 = m.copy()
    m2.center(vacuum=30.0)
    np.testing.assert_allclose(ex.embed([m])[0], ex.embed([m2])[0], atol=1e-5)


def test_ani_skips_unsupported_elements_with_reason():
    ex = _load("ani-1x")
    samples = [
        Sample("ok", atoms=ase_build.molecule("CH4")),
        Sample("si", atoms=ase_build.molecule("SiH4")),
        Sample("xtal", atoms=ase_build.bulk("C", "diamond", a=3.57)),
        Sample("smiles-only", smiles="C"),
    ]
    ids, arrays, skipped = ex.embed_samples(samples)
    assert ids == ["ok"] and arrays[0].shape == (5, 96)
    assert "Si" in skipped["si"] and "periodic" in skipped["xtal"] and "atoms" in skipped["smiles-only"]
    assert not ex.supports(samples[1])
    with pytest.raises(InputError, match="Si"):
        ex.embed([ase_build.molecule("SiH4")])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(UnknownNameError, match="chgnet-0.3.0"):
        models.load("chgnet-0.3")
    ex = _load("chgnet-0.3.0")
    with pytest.raises(InputError, match="no inputs"):
        ex.embed([])
    with pytest.raises(InputError, match="ase.Atoms"):
        ex.embed(["CCO"])
    with pytest.raises(UnknownNameError, match="readout_norm"):
        ex.embed([ase_build.molecule("H2O")], layer="readout")
    with pytest.raises(InputError):
        ex.predict_energy([])
    with pytest.raises(MatterAlignError):
        models.load("sevennet-mf-0", modal="HSE")


def test_checkpoint_path_that_does_not_exist(tmp_path):
    from matteralign.models.base import Extractor

    with pytest.raises(ModelError, match="not found"):
        Extractor._check_checkpoint(tmp_path / "missing.pt", "hub-model")
    with pytest.raises(ModelError, match="checkpoint=PATH"):
        Extractor._check_checkpoint(None, "hub-model")


def test_registry_lists_every_mlip():
    names = models.names()
    for n in ["chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan", "sevennet-0", "sevennet-0-22may2024",
              "sevennet-l3i5", "sevennet-mf-0", "ani-1x", "chgnet-random", "sevennet-random"]:
        assert n in names
    rows = {r["name"]: r for r in models.info()}
    assert rows["ani-1x"]["available"] and rows["ani-1x"]["layers"] == ["aev", "penultimate"]
    assert rows["sevennet-0"]["default_layer"] == "reduce_input_to_hidden"


@pytest.mark.parametrize("name", ["chgnet-0.2.0", "chgnet-r2scan", "sevennet-0-22may2024", "sevennet-l3i5",
                                  "sevennet-mf-0"])
def test_other_checkpoints_load_and_embed(name):
    ex = models.load(name)
    x = ex.embed([ase_build.bulk("Cu", "fcc", a=3.6), ase_build.molecule("H2O")])
    assert [a.shape for a in x] == [(1, 64), (3, 64)]
    e = ex.predict_energy([ase_build.bulk("Cu", "fcc", a=3.6)])[0]
    # eV/atom for Cu: MPtrj (PBE) models give about -4.1; r2SCAN total energies sit lower (about -10.8)
    assert (-11.5 < e < -10.0) if name == "chgnet-r2scan" else (-4.3 < e < -3.9)
    if name == "sevennet-mf-0":
        assert ex.provenance()["modal"] == "PBE"
