"""PET-MAD in the ``pet`` environment: a seeded random PET built with metatrain's own classes and saved by its own
trainer (``pet_random.py``) is loaded back through our adapter (via the worker subprocess); its per-atom layers
equal an independent path one structure at a time (hooks on the energy head for ``last_layer_features``, the
model's own ``feature`` output for ``features``), are unchanged by translations, and its energies equal the
model's own energy output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from matteralign import envs
from matteralign.errors import ModelError
from matteralign.execute import extract
from matteralign.execute.wire import read_samples
from matteralign.store import Store

pytestmark = [pytest.mark.models, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def pet(tmp_path_factory):
    envs.create("pet")
    out = tmp_path_factory.mktemp("pet")
    proc = envs.run_in_env("pet", [HERE / "pet_random.py", out])
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_pet_layers_equal_independent_paths_and_energies(pet, tmp_path):
    out, info = pet
    ds = read_samples(out / "dataset.npz")
    ref = np.load(out / "reference.npz")
    store = Store(tmp_path / "store")
    opts = {"checkpoint": info["checkpoint"], "trust_checkpoint": True, "seed": 0}
    summary = extract(tmp_path / "store", ds, "pet-mad", layers=["features", "last_layer_features"], options=opts,
                      shard_size=5, progress=False)
    assert summary["env"] == "pet" and summary["n"] == len(ds) and summary["n_skipped"] == 0
    for layer in ("features", "last_layer_features"):
        ids, feats, offs = store.read_atoms(ds.name, "pet-mad", layer)
        assert ids == ds.ids
        want = ref[layer]
        assert feats.shape == want.shape
        np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))

        def rows(sid, ids=ids, feats=feats, offs=offs):
            k = ids.index(sid)
            return feats[offs[k]:offs[k + 1]]

        for sid in ids:
            if sid.endswith("-shift"):
                a = rows(sid.rsplit("-", 1)[0])
                np.testing.assert_allclose(rows(sid), a, atol=1e-4 * max(1.0, float(np.abs(a).max())), err_msg=sid)
        assert not np.allclose(rows("ethanol"), rows("ethanol-rot"), atol=1e-3)  # not rotation invariant
    prov = store.provenance(ds.name, "pet-mad", "last_layer_features")["provenance"]
    assert prov["env"] == "pet" and prov["trust_checkpoint"] and prov["d_pet"] == 16
    code = ("import json, sys, numpy as np\n"
            "from matteralign import models\n"
            "from matteralign.execute.wire import read_samples\n"
            f"ds = read_samples({str(out / 'dataset.npz')!r})\n"
            f"m = models.load('pet-mad', checkpoint={info['checkpoint']!r}, trust_checkpoint=True)\n"
            "print(json.dumps(m.predict_energy([s.atoms for s in ds]).tolist()))\n")
    energies = json.loads(envs.run_in_env("pet", ["-c", code]).stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(energies, ref["energy"], rtol=1e-5, atol=1e-5)


def test_pet_checkpoint_needs_trust_and_names_the_path(pet, tmp_path):
    out, info = pet
    ds = read_samples(out / "dataset.npz")
    with pytest.raises(ModelError, match="is a pickle; loading it unpickles"):
        extract(tmp_path / "s1", ds, "pet-mad", options={"checkpoint": info["checkpoint"]}, progress=False)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="bad.ckpt"):
        extract(tmp_path / "s2", ds, "pet-mad", options={"checkpoint": str(bad), "trust_checkpoint": True},
                progress=False)
