"""The store proves its contents: each kind of damage is detected on the next read, named, and repaired.

Damage of each kind (a missing chunk, flipped bytes, a chunk of another array, truncated metadata)
is made by hand on a store written by an extraction; the next read raises a StoreError naming the
dataset, model, layer and shard with the fix; ``verify`` lists it; ``repair`` deletes the damaged
shards only (the whole layer only when its metadata is unreadable) and a rerun of the extraction
recomputes just their samples, restoring contents equal to the undamaged store bit for bit.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from matteralign._lock import FolderLock, holder
from matteralign.errors import LockedError, StoreError
from matteralign.execute import extract
from matteralign.models.base import Extractor
from matteralign.samples import Dataset, Sample
from matteralign.store import Store

N, SHARD = 9000, 1000  # pooled is chunked by 8192 rows: two chunks, the second inside shard 8


class Rows(Extractor):
    """One deterministic 8-wide row per sample (cheap), two rows for every seventh sample."""

    name = "rows"
    family = "test"
    modality = "smiles"
    default_layer = "h"

    def layers(self):
        return ["h"]

    seen: list[str] = []  # every input embedded, in this process

    def _embed(self, inputs, layer):
        out = []
        Rows.seen.extend(inputs)
        for s in inputs:
            i = int(s[1:])
            base = np.sin(np.arange(8, dtype=np.float32) * (i + 1) * 0.001) + i * 1e-3
            out.append(np.stack([base, base + 1]) if i % 7 == 0 else base[None, :])
        return out


def _dataset(n=N):
    return Dataset("rowset", [Sample(f"r{i:05d}", smiles=f"C{i}") for i in range(n)])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine") / "store"
    st = Store(root)
    extract(st, _dataset(), Rows(batch_size=500), shard_size=SHARD, progress=False)
    ids, X = st.read("rowset", "rows", "h")
    aids, F, off = st.read_atoms("rowset", "rows", "h")
    return root, ids, X, F, off


@pytest.fixture
def store(pristine, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(pristine[0], root)
    return root


def _layer(root):
    return root / "rowset" / "rows" / "h"


def _chunks(arr_dir):
    return sorted(p for p in (arr_dir / "c").rglob("*") if p.is_file())


def _flip(path, at=None):
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    for j in range(at, min(at + 8, len(data))):
        data[j] ^= 0xFF
    path.write_bytes(bytes(data))


def _missing_pooled_chunk(root):
    _chunks(_layer(root) / "pooled")[-1].unlink()
    return "pooled", [8]


def _flipped_pooled_bytes(root):
    _flip(_chunks(_layer(root) / "pooled")[0])
    return "pooled", None


def _foreign_pooled_chunk(root):
    a, b = _chunks(_layer(root) / "pooled")[:2]
    shutil.copy(a, b)  # a valid chunk, of the wrong rows
    return "pooled", [8]


def _missing_ids_chunk(root):
    for c in _chunks(_layer(root) / "sample_ids"):
        c.unlink()
    return "sample_ids", None


def _truncated_array_metadata(root):
    meta = _layer(root) / "pooled" / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:40])
    return "pooled", None


def _flipped_atom_bytes(root):
    _flip(_chunks(_layer(root) / "atom_features")[0], at=200)
    return "atom_features", None


DAMAGES = [_missing_pooled_chunk, _flipped_pooled_bytes, _foreign_pooled_chunk, _missing_ids_chunk,
           _truncated_array_metadata, _flipped_atom_bytes]

#: The shards each damage makes the next run recompute ("some": the rows of the flipped bytes, not all 9;
#: None: the whole layer, as the array's metadata is unreadable). The last pooled chunk holds shard 8's rows
#: only; the ids chunk holds every row.
RECOMPUTE = {_missing_pooled_chunk: [8], _flipped_pooled_bytes: "some", _foreign_pooled_chunk: [8],
             _missing_ids_chunk: list(range(9)), _truncated_array_metadata: None, _flipped_atom_bytes: "some"}


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.strip("_"))
def test_damage_is_detected_named_and_repaired(store, pristine, damage):
    _, ids0, X0, F0, off0 = pristine
    array, shards = damage(store)
    st = Store(store)
    with pytest.raises(StoreError) as err:
        st.read("rowset", "rows", "h")
        st.read_atoms("rowset", "rows", "h")
    msg = str(err.value)
    assert "rowset/rows/h" in msg and repr(array) in msg and "store repair" in msg and str(store) in msg
    if shards is not None:
        assert f"shard(s) {', '.join(map(str, shards))}" in msg
    problems = st.verify()
    assert problems and {p["array"] for p in problems} >= {array}
    assert all((p["dataset"], p["model"], p["layer"]) == ("rowset", "rows", "h") for p in problems)
    repaired = st.repair()
    recompute = {None if p["recompute"] is None else tuple(p["recompute"]) for p in repaired}
    assert len(recompute) == 1
    (recompute,) = recompute
    want = RECOMPUTE[damage]
    if want is None:
        assert recompute is None and not _layer(store).exists()
    elif want == "some":
        assert recompute and len(recompute) < N // SHARD
    else:
        assert recompute == tuple(want)
    if recompute is not None:  # the other shards were taken back out of the finished layer, checked
        assert sorted(int(x.name) for x in (_layer(store) / "shards").glob("0*")) == \
            [k for k in range(N // SHARD) if k not in recompute]
    assert Store(store).verify() == []
    Rows.seen.clear()
    summary = extract(Store(store), _dataset(), Rows(batch_size=500), shard_size=SHARD, progress=False)
    n_shards = N // SHARD if recompute is None else len(recompute)
    assert summary["computed_shards"] == n_shards and len(Rows.seen) == n_shards * SHARD
    if recompute is not None:
        assert sorted(Rows.seen) == sorted(f"C{i}" for k in recompute for i in range(k * SHARD, (k + 1) * SHARD))
    assert Store(store).content_digest("rowset", "rows", "h") == Store(pristine[0]).content_digest("rowset", "rows", "h")
    ids, X = Store(store).read("rowset", "rows", "h")
    _, F, off = Store(store).read_atoms("rowset", "rows", "h")
    assert ids == ids0
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(F, F0)
    np.testing.assert_array_equal(off, off0)


def test_repair_of_a_finished_layer_recomputes_only_the_damaged_shard(store, pristine):
    """One chunk of a finished layer lost: `store repair` removes its shard only; the rerun embeds its 1,000
    samples alone and the layer equals the undamaged one bit for bit (contents and content digest)."""
    _, ids0, X0, F0, off0 = pristine
    _chunks(_layer(store) / "pooled")[-1].unlink()  # rows 8192..8999: shard 8 (samples 8000..8999)
    repair = subprocess.run([sys.executable, "-m", "matteralign.cli", "store", "repair", str(store)],
                            capture_output=True, text=True)
    assert repair.returncode == 0, repair.stderr
    text = " ".join(repair.stdout.split())
    assert "removed shard(s) 8 of rowset/rows/h" in text and "whole layer" not in text
    st = Store(store)
    assert not st.has("rowset", "rows", "h") and st.list()[0]["n_shards"] == 8
    with pytest.raises(StoreError, match="incomplete"):
        st.read("rowset", "rows", "h")
    Rows.seen.clear()
    summary = extract(st, _dataset(), Rows(batch_size=500), shard_size=SHARD, progress=False)
    assert summary["computed_shards"] == 1 and sorted(Rows.seen) == [f"C{i}" for i in range(8000, 9000)]
    assert not (_layer(store) / "shards").exists()
    ids, X = st.read("rowset", "rows", "h")
    _, F, off = st.read_atoms("rowset", "rows", "h")
    assert ids == ids0
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(F, F0)
    np.testing.assert_array_equal(off, off0)
    assert st.content_digest("rowset", "rows", "h") == Store(pristine[0]).content_digest("rowset", "rows", "h")
    assert st.verify() == []


class TwoLayers(Rows):
    """Rows at two layers ("g" is "h" doubled), extracted in one job."""

    name = "rows2"

    def layers(self):
        return ["h", "g"]

    def _embed(self, inputs, layer):
        out = super()._embed(inputs, layer)
        return [2 * a for a in out] if layer == "g" else out


def test_repair_of_one_layer_of_a_several_layer_job(tmp_path):
    """A damaged shard of one layer: the job recomputes that shard, the intact layer is left as it was."""
    ds = _dataset()
    st = Store(tmp_path / "s")
    extract(st, ds, TwoLayers(batch_size=500), layers=["h", "g"], shard_size=SHARD, progress=False)
    ref = {lay: st.read("rowset", "rows2", lay)[1] for lay in ("h", "g")}
    g_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / "rowset" / "rows2" / "g").rglob("*")}
    _chunks(tmp_path / "s" / "rowset" / "rows2" / "h" / "pooled")[-1].unlink()  # shard 8 of layer h
    (problem,) = st.verify()
    (repaired,) = st.repair()
    assert repaired["recompute"] == [8] and st.has("rowset", "rows2", "g")
    Rows.seen.clear()
    summary = extract(st, ds, TwoLayers(batch_size=500), layers=["h", "g"], shard_size=SHARD, progress=False)
    assert summary["computed_shards"] == 1 and len(Rows.seen) == 2 * SHARD  # one shard, both layers captured
    for lay in ("h", "g"):
        np.testing.assert_array_equal(st.read("rowset", "rows2", lay)[1], ref[lay])
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / "rowset" / "rows2" / "g").rglob("*")} == g_files


def test_truncated_layer_metadata_is_reported_and_repaired(store, pristine):
    meta = _layer(store) / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:100])
    st = Store(store)
    with pytest.raises(StoreError, match="rowset/rows/h"):
        st.read("rowset", "rows", "h")
    (row,) = st.list()
    assert row["error"] and not row["complete"]
    (problem,) = st.verify()
    assert "metadata cannot be read" in problem["message"]
    st.repair()
    extract(Store(store), _dataset(), Rows(batch_size=500), shard_size=SHARD, progress=False)
    np.testing.assert_array_equal(Store(store).read("rowset", "rows", "h")[1], pristine[2])


def test_intact_store_verifies_and_reads_check_once_per_process(store, pristine, monkeypatch):
    import matteralign.store as store_mod

    st = Store(store)
    calls = []
    real = store_mod._digest
    monkeypatch.setattr(store_mod, "_digest", lambda d, a: calls.append(1) or real(d, a))
    st.read("rowset", "rows", "h")
    first = len(calls)
    st.read("rowset", "rows", "h")
    assert first == 2 * 9 and len(calls) == first  # ids and pooled, 9 shards each; unchanged: not hashed again
    assert st.verify() == [] and len(calls) > first  # verify checks everything again
    _chunks(_layer(store) / "pooled")[-1].unlink()  # a changed file is checked again
    with pytest.raises(StoreError, match="shard"):
        st.read("rowset", "rows", "h")


def test_damaged_shard_of_an_unfinished_extraction(tmp_path):
    """A committed shard damaged before consolidation: named on finishing, only it is recomputed."""
    ds = _dataset(3000)
    st = Store(tmp_path / "s")
    ref = Store(tmp_path / "ref")
    extract(ref, ds, Rows(batch_size=500), shard_size=SHARD, progress=False)
    for k, lo in enumerate(range(0, 3000, SHARD)):
        block = ds.samples[lo:lo + SHARD]
        ids, arrays, skipped = Rows().embed_samples(block, layer="h")
        st.write_shard("rowset", "rows", "h", k, ids=ids, arrays=arrays, skipped=skipped,
                       block_ids=[s.id for s in block])
    shard1 = _layer(tmp_path / "s") / "shards" / "000001"
    _flip(_chunks(shard1 / "pooled")[0])
    with pytest.raises(StoreError, match=r"rowset/rows/h: array 'pooled' of committed shard 1 .*store repair"):
        st.finish("rowset", "rows", "h", n_shards=3)
    (problem,) = st.verify()
    assert problem["in_progress"] and problem["shards"] == [1]
    st.repair()
    assert not shard1.exists() and (_layer(tmp_path / "s") / "shards" / "000000").exists()
    extract(st, ds, Rows(batch_size=500), shard_size=SHARD, progress=False)
    np.testing.assert_array_equal(st.read("rowset", "rows", "h")[1], ref.read("rowset", "rows", "h")[1])


def test_content_digest_changes_with_contents(store, pristine, tmp_path):
    st = Store(store)
    d0 = st.content_digest("rowset", "rows", "h")
    assert d0 == Store(pristine[0]).content_digest("rowset", "rows", "h")
    assert "integrity" not in st.provenance("rowset", "rows", "h")
    other = Store(tmp_path / "other")
    extract(other, _dataset(N - 1), Rows(batch_size=500), shard_size=SHARD, progress=False)
    assert other.content_digest("rowset", "rows", "h") != d0


def test_store_commit_lock_names_the_holder(tmp_path):
    st = Store(tmp_path / "s")
    code = ("import sys, time; from matteralign._lock import FolderLock; "
            f"FolderLock({str(tmp_path / 's')!r}, purpose='store commit').acquire(); print('held', flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        rec = holder(st.path)
        assert rec["pid"] == proc.pid and rec["purpose"] == "store commit"
        t0 = time.perf_counter()
        with pytest.raises(LockedError, match=rf"process {proc.pid} on host .* after waiting 0.5 s"):
            FolderLock(st.path, timeout=0.5, poll=0.1).acquire()
        assert time.perf_counter() - t0 >= 0.5
    finally:
        proc.kill()
        proc.wait()
    lock = FolderLock(st.path).acquire()  # the dead holder's lock is taken over
    try:
        assert lock.took_over["pid"] == proc.pid
        assert holder(st.path)["pid"] != proc.pid
    finally:
        lock.release()
    assert holder(st.path) is None


def test_recomputed_embeddings_never_reuse_cached_results(tmp_path, monkeypatch):
    """A study's result caches are keyed on the stored contents: embeddings made again with other values (same
    sample ids) give the numbers of a fresh study, not the cached ones."""
    import pandas as pd

    from matteralign.models.controls import RandomExtractor
    from matteralign.study import Study

    base = {"name": "keys", "seed": 0, "models": ["composition", "random"], "datasets": [{"name": "g2", "n": 40}],
            "metrics": {"cknna": {"k": 5}, "unbiased_cka": {}}, "model_metrics": {}, "analyses": {}}
    key = ["model_a", "model_b", "metric", "value"]
    first = Study.from_dict({**base, "out": str(tmp_path / "a")}).run(progress=False, executor="inline")
    shutil.rmtree(tmp_path / "a" / "store" / "g2" / "random")
    orig = RandomExtractor._embed
    monkeypatch.setattr(RandomExtractor, "_embed",
                        lambda self, inputs, layer: [np.sin(3 * a) + a**2 for a in orig(self, inputs, layer)])
    again = Study.from_dict({**base, "out": str(tmp_path / "a")}).run(progress=False, executor="inline")
    fresh = Study.from_dict({**base, "out": str(tmp_path / "b")}).run(progress=False, executor="inline")
    pd.testing.assert_frame_equal(again.pairs[key].reset_index(drop=True), fresh.pairs[key].reset_index(drop=True))
    mixed = "model_a != model_b and (model_a == 'random' or model_b == 'random')"
    assert not np.allclose(again.pairs.query(mixed)["value"], first.pairs.query(mixed)["value"])
    same = "model_a == 'composition' and model_b == 'composition'"
    np.testing.assert_array_equal(again.pairs.query(same)["value"], first.pairs.query(same)["value"])
