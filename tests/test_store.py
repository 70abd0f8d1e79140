"""Tests of the zarr embedding store: round trip, poolings, resume after a crash, bad stores."""

from __future__ import annotations

import json
import shutil
import zlib

import numpy as np
import pytest

from matteralign.errors import InputError, StoreError, UnknownNameError
from matteralign.execute import extract
from matteralign.models.base import Extractor
from matteralign.samples import Dataset, Sample
from matteralign.store import MARKER, Store


class Toy(Extractor):
    """Deterministic per-'atom' features from a string: row j of sample s is f(s, j)."""

    name = "toy"
    family = "test"
    modality = "smiles"
    default_layer = "h"

    def __init__(self, *, fail_after: int | None = None, **kw):
        super().__init__(**kw)
        self.calls = 0
        self.fail_after = fail_after

    def layers(self):
        return ["h", "g"]

    def input_reason(self, s):
        return "empty SMILES" if s == "" else None

    def _embed(self, inputs, layer):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated crash")
        out = []
        for s in inputs:
            n = len(s)
            rng = np.random.default_rng(zlib.crc32(f"{s}|{layer}".encode()))
            out.append(rng.standard_normal((n, 5)).astype(np.float32) + n)
        return out


def _dataset(n=23, name="toyset"):
    return Dataset(name, [Sample(f"{name}:{i:03d}", smiles="C" * (i % 6)) for i in range(n)])


def test_round_trip_and_poolings(tmp_path):
    ds = _dataset()
    ex = Toy(batch_size=4)
    st = Store(tmp_path / "s")
    summary = extract(st, ds, ex, shard_size=5, poolings=("sum", "max"), progress=False)
    kept = [s for s in ds if s.smiles]
    assert summary["n"] == len(kept) and summary["n_skipped"] == len(ds) - len(kept) and summary["dim"] == 5
    per_atom = ex.embed([s.smiles for s in kept])
    ids, X = st.read("toyset", "toy", "h")
    assert ids == [s.id for s in kept]
    assert X.dtype == np.float32 and X.shape == (len(kept), 5)
    np.testing.assert_allclose(X, [p.astype(np.float64).mean(0) for p in per_atom], rtol=1e-6)
    np.testing.assert_allclose(st.read("toyset", "toy", "h", pooling="sum")[1], [p.sum(0) for p in per_atom], rtol=1e-5)
    np.testing.assert_array_equal(st.read("toyset", "toy", "h", pooling="max")[1], [p.max(0) for p in per_atom])
    ids2, F, off = st.read_atoms("toyset", "toy", "h")
    assert ids2 == ids and off[0] == 0 and off[-1] == len(F) == sum(len(p) for p in per_atom)
    for i, p in enumerate(per_atom):
        np.testing.assert_array_equal(F[off[i]:off[i + 1]], p)
    assert st.skipped("toyset", "toy", "h") == {s.id: "empty SMILES" for s in ds if not s.smiles}
    prov = st.provenance("toyset", "toy", "h")
    assert prov["dataset"] == "toyset" and prov["plan"]["dataset_fingerprint"] == ds.fingerprint()
    assert prov["provenance"]["name"] == "toy" and prov["provenance"]["layer"] == "h" and prov["complete"]
    assert "zarr" in prov["versions"]
    assert st.has("toyset", "toy", "h") and not st.has("toyset", "toy", "g")
    (row,) = st.list()
    assert row["n"] == len(kept) and row["complete"] and row["poolings"] == ["mean", "sum", "max"]
    assert not (tmp_path / "s" / "toyset" / "toy" / "h" / "shards").exists()
    # reopening read-only gives the same
    ro = Store(tmp_path / "s", mode="r")
    np.testing.assert_array_equal(ro.read("toyset", "toy", "h")[1], X)
    # pooling computed from atoms when not stored
    st2 = Store(tmp_path / "s2")
    extract(st2, ds, ex, shard_size=7, progress=False)
    np.testing.assert_allclose(st2.read("toyset", "toy", "h", pooling="sum")[1], [p.sum(0) for p in per_atom], rtol=1e-5)


def test_second_run_is_a_no_op(tmp_path):
    ds = _dataset()
    st = Store(tmp_path / "s")
    extract(st, ds, Toy(), shard_size=5, progress=False)
    ex = Toy()
    summary = extract(st, ds, ex, shard_size=5, progress=False)
    assert summary["computed_shards"] == 0 and ex.calls == 0


@pytest.mark.parametrize("crash_after", [1, 3, 4])
def test_resume_after_crash_matches_uninterrupted(tmp_path, crash_after):
    ds = _dataset(n=23)
    ref = Store(tmp_path / "ref")
    extract(ref, ds, Toy(batch_size=5), shard_size=5, progress=False)

    st = Store(tmp_path / "s")
    with pytest.raises(KeyboardInterrupt):
        extract(st, ds, Toy(batch_size=5, fail_after=crash_after), shard_size=5, progress=False)
    assert not st.has("toyset", "toy", "h")
    assert st.list()[0]["n_shards"] == crash_after  # one batch per shard: `crash_after` shards committed
    with pytest.raises(StoreError, match="incomplete"):
        st.read("toyset", "toy", "h")
    # a crash inside a shard write leaves only a temporary folder, which is ignored
    tmp = tmp_path / "s" / "toyset" / "toy" / "h" / "shards" / ".tmp-000004-dead"
    tmp.mkdir()
    ex = Toy(batch_size=5)
    summary = extract(st, ds, ex, shard_size=5, progress=False)
    assert summary["computed_shards"] == 5 - crash_after and ex.calls == 5 - crash_after
    ids, X = st.read("toyset", "toy", "h")
    rids, RX = ref.read("toyset", "toy", "h")
    assert ids == rids and len(set(ids)) == len(ids)
    np.testing.assert_array_equal(X, RX)
    np.testing.assert_array_equal(st.read_atoms("toyset", "toy", "h")[1], ref.read_atoms("toyset", "toy", "h")[1])
    assert st.skipped("toyset", "toy", "h") == ref.skipped("toyset", "toy", "h")


def test_different_plan_needs_overwrite(tmp_path):
    """Other poolings or per-atom choices are refused; so is another shard size for an unfinished extraction."""
    st = Store(tmp_path / "s")
    extract(st, _dataset(n=10), Toy(), shard_size=5, progress=False)
    with pytest.raises(StoreError, match="overwrite"):
        extract(st, _dataset(n=12), Toy(), shard_size=5, poolings=("sum",), progress=False)
    with pytest.raises(StoreError, match="save_atoms"):
        extract(st, _dataset(n=10), Toy(), shard_size=5, save_atoms=False, progress=False)
    extract(st, _dataset(n=12), Toy(), shard_size=5, poolings=("sum",), progress=False, overwrite=True)
    assert len(st.read("toyset", "toy", "h")[0]) == 10  # 12 samples, 2 with empty SMILES
    other = Store(tmp_path / "other")
    with pytest.raises(KeyboardInterrupt):
        extract(other, _dataset(n=10), Toy(batch_size=5, fail_after=1), shard_size=5, progress=False)
    with pytest.raises(StoreError, match="shard_size"):
        extract(other, _dataset(n=10), Toy(), shard_size=4, progress=False)


class Counting(Toy):
    """Toy that counts the samples it embeds."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def _embed(self, inputs, layer):
        out = super()._embed(inputs, layer)
        self.seen.extend(inputs)
        return out


def _same_layer(a: Store, b: Store, layer="h"):
    for pooling in ("mean", "sum", "max"):
        ia, Xa = a.read("toyset", "toy", layer, pooling=pooling)
        ib, Xb = b.read("toyset", "toy", layer, pooling=pooling)
        assert ia == ib
        np.testing.assert_array_equal(Xa, Xb)
    for x, y in zip(a.read_atoms("toyset", "toy", layer), b.read_atoms("toyset", "toy", layer), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert list(a.skipped("toyset", "toy", layer).items()) == list(b.skipped("toyset", "toy", layer).items())
    assert a.content_digest("toyset", "toy", layer) == b.content_digest("toyset", "toy", layer)


def test_raising_n_computes_only_the_new_samples(tmp_path):
    """A larger nested subsample extends the stored layer: only the new samples run, and the layer equals a
    fresh extraction of the larger subsample (rows, per-atom features, skips, content digest)."""
    from matteralign.execute import plan_extraction

    full = _dataset(n=40)
    small, large = full.subsample(15, seed=2), full.subsample(31, seed=2)
    opts = {"shard_size": 4, "poolings": ("sum", "max"), "layers": ["h", "g"], "progress": False}
    st = Store(tmp_path / "s")
    extract(st, small, Toy(batch_size=3), **opts)
    _, units = plan_extraction(st, large, "toy", layers=("h", "g"), shard_size=4, poolings=("sum", "max"))
    new = [s.id for s in large if s.id not in set(small.ids)]
    assert sorted(s.id for u in units for s in u.samples) == sorted(new) and len(new) == 16
    ex = Counting(batch_size=3)
    extract(st, large, ex, **opts)
    assert len(ex.seen) == 2 * sum(1 for s in large if s.id in set(new) and s.smiles)  # two layers, new only
    fresh = Store(tmp_path / "fresh")
    extract(fresh, large, Toy(batch_size=5), **opts)
    for layer in ("h", "g"):
        _same_layer(st, fresh, layer)
    assert st.provenance("toyset", "toy", "h")["plan"] == fresh.provenance("toyset", "toy", "h")["plan"]
    assert st.verify() == [] and not (tmp_path / "s" / "toyset" / "toy" / "h" / "base").exists()
    # the smaller subsample again: nothing to compute; the store keeps the larger one
    ex = Counting()
    extract(st, small, ex, **opts)
    assert ex.seen == [] and len(st.read("toyset", "toy", "h")[0]) == sum(1 for s in large if s.smiles)
    # a shard size of its own does not matter to a finished layer
    ex = Counting()
    extract(st, large, ex, **{**opts, "shard_size": 7})
    assert ex.seen == []


@pytest.mark.parametrize("crash_after", [1, 2])
def test_interrupted_extension_resumes(tmp_path, crash_after):
    full = _dataset(n=40)
    small, large = full.subsample(10, seed=0), full.subsample(30, seed=0)
    st = Store(tmp_path / "s")
    extract(st, small, Toy(), shard_size=5, progress=False)
    with pytest.raises(KeyboardInterrupt):
        extract(st, large, Toy(batch_size=5, fail_after=crash_after), shard_size=5, progress=False)
    assert not st.has("toyset", "toy", "h") and st.verify() == []
    with pytest.raises(StoreError, match="incomplete"):
        st.read("toyset", "toy", "h")
    ex = Counting(batch_size=5)
    summary = extract(st, large, ex, shard_size=5, progress=False)
    new = [s for s in large if s.id not in set(small.ids)]  # 20 new samples: 4 shards, `crash_after` committed
    assert summary["computed_shards"] == 4 - crash_after
    assert ex.seen == [s.smiles for s in new[5 * crash_after:] if s.smiles]
    fresh = Store(tmp_path / "fresh")
    extract(fresh, large, Toy(), shard_size=5, progress=False)
    _same_layer(st, fresh)


def test_damaged_kept_rows_of_an_extension_are_repaired(tmp_path):
    full = _dataset(n=40)
    st = Store(tmp_path / "s")
    extract(st, full.subsample(10, seed=0), Toy(), shard_size=5, progress=False)
    with pytest.raises(KeyboardInterrupt):
        extract(st, full.subsample(30, seed=0), Toy(batch_size=5, fail_after=1), shard_size=5, progress=False)
    base = tmp_path / "s" / "toyset" / "toy" / "h" / "base"
    chunk = next(p for p in (base / "pooled").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"\0" * len(chunk.read_bytes()))
    (found,) = st.verify()
    assert found["in_progress"] and found["shards"] == [] and "shard base" in found["message"]
    st.repair()
    assert st.list() == []
    extract(st, full.subsample(30, seed=0), Toy(), shard_size=5, progress=False)
    fresh = Store(tmp_path / "fresh")
    extract(fresh, full.subsample(30, seed=0), Toy(), shard_size=5, progress=False)
    _same_layer(st, fresh)


def test_foreign_corrupt_and_missing_stores(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "foreign"), mode="w").attrs["something"] = 1
    with pytest.raises(StoreError, match="marker"):
        Store(tmp_path / "foreign")
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="corrupt"):
        Store(bad)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="plain"):
        Store(plain)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreError, match="file"):
        Store(f)
    with pytest.raises(StoreError, match="no matteralign store"):
        Store(tmp_path / "nothing", mode="r")
    old = tmp_path / "old"
    Store(old)
    meta = json.loads((old / "zarr.json").read_text())
    meta["attributes"][MARKER] = 99
    (old / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="version"):
        Store(old)


def test_bad_reads_and_inputs(tmp_path):
    st = Store(tmp_path / "s")
    with pytest.raises(StoreError, match="store is empty"):
        st.read("toyset", "toy", "h")
    extract(st, _dataset(n=6), Toy(), progress=False)
    with pytest.raises(StoreError, match="toyset/toy/h"):
        st.read("toyset", "toy", "g")
    with pytest.raises(UnknownNameError):
        st.read("toyset", "toy", "h", pooling="median")
    with pytest.raises(InputError, match="empty"):
        extract(st, Dataset("e", []), Toy(), progress=False)
    with pytest.raises(InputError, match="shard_size"):
        extract(st, _dataset(n=6), Toy(), shard_size=0, progress=False)
    with pytest.raises(UnknownNameError, match="layer"):
        extract(st, _dataset(n=6), Toy(), layer="zz", progress=False)
    with pytest.raises(InputError, match="NaN"):
        st.write_shard("d", "m", "l", 0, ids=["a"], arrays=[np.array([[np.nan]])])


def test_corrupt_layer_group_is_reported(tmp_path):
    st = Store(tmp_path / "s")
    extract(st, _dataset(n=6), Toy(), progress=False)
    (tmp_path / "s" / "toyset" / "toy" / "h" / "zarr.json").write_text("garbage")
    with pytest.raises(StoreError, match="corrupt"):
        st.read("toyset", "toy", "h")
    shutil.rmtree(tmp_path / "s" / "toyset")
    assert st.list() == []


def test_progress_callback(tmp_path):
    seen = []
    extract(Store(tmp_path / "s"), _dataset(n=11), Toy(), shard_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (11, 11) and seen[0] == (0, 11)


@pytest.mark.models
def test_chgnet_resume_after_crash(tmp_path):
    pytest.importorskip("chgnet")
    from ase.build import bulk, molecule

    from matteralign import models

    structures = [molecule(m) for m in ("H2O", "CH4", "NH3", "C2H6", "CH3OH")] + [bulk("Si"), molecule("H")]
    ds = Dataset("mini", [Sample(f"mini:{i}", atoms=a) for i, a in enumerate(structures)])
    ex = models.load("chgnet-0.3.0", batch_size=2)
    ref = Store(tmp_path / "ref")
    extract(ref, ds, ex, shard_size=2, progress=False)

    calls = {"n": 0}
    original = ex._embed

    def crashing(inputs, layer):
        calls["n"] += 1
        if calls["n"] == 3:  # Ctrl-C in the middle of the second shard
            raise KeyboardInterrupt("killed")
        return original(inputs, layer)

    ex._embed = crashing
    st = Store(tmp_path / "s")
    with pytest.raises(KeyboardInterrupt, match="killed"):
        extract(st, ds, ex, shard_size=2, progress=False)
    ex._embed = original
    extract(st, ds, ex, shard_size=2, progress=False)
    ids, X = st.read("mini", "chgnet-0.3.0", "readout_norm")
    rids, RX = ref.read("mini", "chgnet-0.3.0", "readout_norm")
    assert ids == rids == [f"mini:{i}" for i in range(6)]
    np.testing.assert_array_equal(X, RX)
    assert "isolated" in st.skipped("mini", "chgnet-0.3.0", "readout_norm")["mini:6"]
