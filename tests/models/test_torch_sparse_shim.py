"""The pure-torch ``torch_sparse`` stand-in equals a dense reference of the operation GemNet-T makes."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from matteralign.models import _torch_sparse_shim as shim  # noqa: E402


def _dense_reference(row, col, n_rows, n_cols, idx):
    """Gather rows ``idx`` of the dense matrix holding ``value = position + 1`` and read its non-zeros
    row-major: (output row, column, value) of each, in that order. Inputs without duplicate entries."""
    dense = np.zeros((n_rows, n_cols), dtype=np.int64)
    dense[row, col] = np.arange(len(row)) + 1
    gathered = dense[idx]
    k, c = np.nonzero(gathered)  # row-major order
    return k, c, gathered[k, c] - 1


def _loop_reference(row, col, idx):
    """Entries of each gathered row sorted by column, entries of one (row, col) in insertion order."""
    out_k, out_c, out_v = [], [], []
    for k, r in enumerate(idx):
        entries = sorted((int(col[e]), e) for e in range(len(row)) if row[e] == r)
        for c, e in entries:
            out_k.append(k)
            out_c.append(c)
            out_v.append(e)
    return np.array(out_k, np.int64), np.array(out_c, np.int64), np.array(out_v, np.int64)


def _shim_triplets(row, col, n_rows, n_cols, idx):
    adj = shim.SparseTensor(row=torch.as_tensor(row), col=torch.as_tensor(col),
                            value=torch.arange(len(row)), sparse_sizes=(torch.tensor(n_rows), torch.tensor(n_cols)))
    got = adj[torch.as_tensor(idx)].to("cpu")
    return got.storage.row().numpy(), got.storage.col().numpy(), got.storage.value().numpy(), got


@pytest.mark.parametrize("seed", range(6))
def test_row_gather_equals_dense_reference_without_duplicates(seed):
    rng = np.random.default_rng(seed)
    n_rows, n_cols = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    nnz = int(rng.integers(0, n_rows * n_cols + 1))
    flat = rng.choice(n_rows * n_cols, size=nnz, replace=False)  # random order, no duplicates
    row, col = flat // n_cols, flat % n_cols
    idx = rng.integers(0, n_rows, size=int(rng.integers(0, 3 * n_rows)))  # repeats, some rows never
    k, c, v, got = _shim_triplets(row, col, n_rows, n_cols, idx)
    rk, rc, rv = _dense_reference(row, col, n_rows, n_cols, idx)
    np.testing.assert_array_equal(k, rk)
    np.testing.assert_array_equal(c, rc)
    np.testing.assert_array_equal(v, rv)
    assert got.sparse_sizes() == (len(idx), n_cols)


def test_empty_rows_and_empty_gather():
    row, col = np.array([2, 2, 0]), np.array([1, 0, 3])   # rows 1, 3 empty
    k, c, v, _ = _shim_triplets(row, col, 4, 4, np.array([1, 3, 2, 1, 0, 2]))
    np.testing.assert_array_equal(k, [2, 2, 4, 5, 5])
    np.testing.assert_array_equal(c, [0, 1, 3, 0, 1])
    np.testing.assert_array_equal(v, [1, 0, 2, 1, 0])
    k, c, v, got = _shim_triplets(row, col, 4, 4, np.array([], np.int64))
    assert k.size == c.size == v.size == 0 and got.sparse_sizes() == (0, 4)
    k, c, v, _ = _shim_triplets(np.array([], np.int64), np.array([], np.int64), 3, 3, np.array([0, 2]))
    assert k.size == 0


@pytest.mark.parametrize("seed", range(6))
def test_duplicate_entries_keep_insertion_order(seed):
    # periodic images: one atom pair (row, col) stored several times, the value telling them apart
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 7))
    nnz = int(rng.integers(1, 40))
    row, col = rng.integers(0, n, nnz), rng.integers(0, n, nnz)
    assert seed or len(set(zip(row.tolist(), col.tolist(), strict=True))) < nnz  # duplicates present
    idx = rng.integers(0, n, size=int(rng.integers(1, 3 * n)))
    k, c, v, got = _shim_triplets(row, col, n, n, idx)
    rk, rc, rv = _loop_reference(row, col, idx)
    np.testing.assert_array_equal(k, rk)
    np.testing.assert_array_equal(c, rc)
    np.testing.assert_array_equal(v, rv)
    # the dense sums agree as well (duplicates added)
    dense = np.zeros((n, n), np.int64)
    np.add.at(dense, (row, col), np.arange(nnz))
    np.testing.assert_array_equal(got.to_dense().numpy(), dense[idx])


def test_gemnet_triplets_on_a_graph():
    """The get_triplets use: edges c->a, every b->a for each c->a (self pairs dropped afterwards)."""
    rng = np.random.default_rng(7)
    n_atoms, n_edges = 5, 30
    idx_s, idx_t = rng.integers(0, n_atoms, n_edges), rng.integers(0, n_atoms, n_edges)
    adj = shim.SparseTensor(row=torch.as_tensor(idx_t), col=torch.as_tensor(idx_s), value=torch.arange(n_edges),
                            sparse_sizes=(torch.tensor(n_atoms), torch.tensor(n_atoms)))
    e = adj[torch.as_tensor(idx_t)]
    ba, ca = e.storage.value().numpy(), e.storage.row().numpy()
    want = {(int(b), int(c)) for c in range(n_edges) for b in range(n_edges) if idx_t[b] == idx_t[c]}
    assert set(zip(ba.tolist(), ca.tolist(), strict=True)) == want and len(ba) == len(want)
    assert np.all(np.diff(ca) >= 0)  # grouped by the output edge, as ragged_range needs


def test_bad_use_is_refused():
    adj = shim.SparseTensor(row=torch.tensor([0, 1]), col=torch.tensor([1, 0]), sparse_sizes=(2, 2))
    with pytest.raises(NotImplementedError, match="stand-in"):
        adj[0:1]
    with pytest.raises(NotImplementedError, match="stand-in"):
        adj.storage.csc()
    with pytest.raises(IndexError):
        adj[torch.tensor([2])]
    with pytest.raises(IndexError):
        shim.SparseTensor(row=torch.tensor([3]), col=torch.tensor([0]), sparse_sizes=(2, 2))


def test_install_only_without_the_real_package(monkeypatch):
    real = sys.modules.get("torch_sparse")
    monkeypatch.delitem(sys.modules, "torch_sparse", raising=False)
    try:
        import importlib.util

        have_real = importlib.util.find_spec("torch_sparse") is not None
        assert shim.install() is (not have_real)
        if not have_real:
            import torch_sparse

            assert shim.is_shim(torch_sparse) and torch_sparse.SparseTensor is shim.SparseTensor
            assert shim.install() is True  # idempotent
    finally:
        sys.modules.pop("torch_sparse", None)
        if real is not None:
            sys.modules["torch_sparse"] = real
