"""A pure-torch stand-in for the part of ``torch_sparse`` that MatterGen's GemNet-T uses.

``torch_sparse`` (PyG) is published on PyPI only as a source distribution whose C++ extension takes
about 15 minutes to compile on two cores. MatterGen 1.0.3 (``mattergen/common/gemnet/gemnet.py``,
``GemNetT.get_triplets``) uses it for one operation, building the triplets ``b -> a <- c`` of a
directed graph::

    adj = SparseTensor(row=idx_t, col=idx_s, value=arange(n_edges), sparse_sizes=(n_atoms, n_atoms))
    adj_edges = adj[idx_t]                      # row gather
    id3_ba = adj_edges.storage.value()          # values of the gathered rows, row after row
    id3_ca = adj_edges.storage.row()            # position in idx_t of the row each value came from

This module implements exactly that (COO storage sorted row-major on construction, row gather by
an index tensor, ``.storage.row()/.col()/.value()``, ``.to()``) with torch operations, and nothing
else: any other use raises ``NotImplementedError`` naming it. Entries with the same ``(row, col)``
(periodic images of one atom pair) keep their insertion order (a stable sort); ``torch_sparse``
sorts with ``torch.sort`` and may order such duplicates differently, which only permutes terms of
the sums GemNet-T makes over triplets. :func:`install` puts this module in ``sys.modules`` as
``torch_sparse`` only when the real package cannot be imported.

The tests (``tests/models/test_torch_sparse_shim.py``) prove it equal to a dense reference (build
the dense matrix, gather rows, read the non-zeros row-major) on random inputs with empty rows,
repeated gather indices and duplicate entries.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["SparseStorage", "SparseTensor", "install", "is_shim"]

#: Marker read by :func:`is_shim`.
__matteralign_shim__ = True


def _size(x: Any) -> int:
    return int(x.item()) if hasattr(x, "item") else int(x)


class SparseStorage:
    """COO storage sorted by ``(row, col)``: the three accessors GemNet-T reads.

    Parameters
    ----------
    row, col : LongTensor, shape (nnz,)
    value : Tensor, shape (nnz, ...), optional
    sparse_sizes : (int, int)
    is_sorted : bool
        The entries are already sorted row-major (skip the sort).
    """

    def __init__(self, *, row, col, value=None, sparse_sizes=None, is_sorted: bool = False):
        import torch

        row = torch.as_tensor(row, dtype=torch.long)
        col = torch.as_tensor(col, dtype=torch.long, device=row.device)
        if row.dim() != 1 or col.shape != row.shape:
            raise ValueError(f"row and col must be 1-d of one length; got {tuple(row.shape)} and {tuple(col.shape)}")
        if value is not None and value.shape[0] != row.numel():
            raise ValueError(f"value has {value.shape[0]} entries for {row.numel()} indices")
        if sparse_sizes is None or sparse_sizes[0] is None or sparse_sizes[1] is None:
            n_rows = _size(row.max()) + 1 if row.numel() else 0
            n_cols = _size(col.max()) + 1 if col.numel() else 0
            sparse_sizes = (n_rows if sparse_sizes is None or sparse_sizes[0] is None else sparse_sizes[0],
                            n_cols if sparse_sizes is None or sparse_sizes[1] is None else sparse_sizes[1])
        self._sparse_sizes = (_size(sparse_sizes[0]), _size(sparse_sizes[1]))
        if row.numel() and (int(row.min()) < 0 or int(row.max()) >= self._sparse_sizes[0]
                            or int(col.min()) < 0 or int(col.max()) >= self._sparse_sizes[1]):
            raise IndexError(f"indices out of range for sparse sizes {self._sparse_sizes}")
        if not is_sorted and row.numel() > 1:
            key = row * self._sparse_sizes[1] + col
            if bool((key[1:] < key[:-1]).any()):
                perm = torch.sort(key, stable=True).indices
                row, col = row[perm], col[perm]
                value = value[perm] if value is not None else None
        self._row, self._col, self._value = row, col, value

    def row(self):
        """Row index of each stored entry, ``(nnz,)``, non-decreasing."""
        return self._row

    def col(self):
        """Column index of each stored entry, ``(nnz,)``."""
        return self._col

    def value(self):
        """Value of each stored entry (``None`` when the tensor has no values)."""
        return self._value

    def has_value(self) -> bool:
        return self._value is not None

    def sparse_sizes(self) -> tuple[int, int]:
        return self._sparse_sizes

    def rowcount(self):
        """Number of stored entries in each row, ``(n_rows,)``."""
        import torch

        return torch.bincount(self._row, minlength=self._sparse_sizes[0])

    def rowptr(self):
        """CSR row pointer, ``(n_rows + 1,)``."""
        import torch

        ptr = torch.zeros(self._sparse_sizes[0] + 1, dtype=torch.long, device=self._row.device)
        torch.cumsum(self.rowcount(), dim=0, out=ptr[1:])
        return ptr

    def to(self, *args, **kwargs) -> SparseStorage:
        out = SparseStorage.__new__(SparseStorage)
        out._sparse_sizes = self._sparse_sizes
        out._row = self._row.to(*args, **kwargs)
        out._col = self._col.to(*args, **kwargs)
        out._value = self._value.to(*args, **kwargs) if self._value is not None else None
        return out

    def __getattr__(self, name: str):
        raise NotImplementedError(f"SparseStorage.{name} is not part of the torch_sparse stand-in used for "
                                  "MatterGen (install the real torch-sparse for it)")


class SparseTensor:
    """The ``torch_sparse.SparseTensor`` constructor, row gather and accessors GemNet-T uses.

    Parameters
    ----------
    row, col : LongTensor, shape (nnz,)
        Coordinates of the stored entries (any order; sorted row-major, duplicates kept in order).
    value : Tensor, shape (nnz, ...), optional
    sparse_sizes : (int, int), optional
        Matrix shape (0-d tensors accepted); the largest indices plus one when omitted.
    is_sorted : bool
    """

    def __init__(self, *, row=None, rowptr=None, col=None, value=None, sparse_sizes=None, is_sorted: bool = False,
                 trust_data: bool = False):
        if rowptr is not None or row is None or col is None:
            raise NotImplementedError("the torch_sparse stand-in builds a SparseTensor from row=, col= only")
        self.storage = SparseStorage(row=row, col=col, value=value, sparse_sizes=sparse_sizes, is_sorted=is_sorted)

    @classmethod
    def _from_storage(cls, storage: SparseStorage) -> SparseTensor:
        out = cls.__new__(cls)
        out.storage = storage
        return out

    def sparse_sizes(self) -> tuple[int, int]:
        return self.storage.sparse_sizes()

    def sparse_size(self, dim: int) -> int:
        return self.storage.sparse_sizes()[dim]

    def nnz(self) -> int:
        return int(self.storage.col().numel())

    def coo(self):
        """``(row, col, value)`` of the stored entries, row-major."""
        return self.storage.row(), self.storage.col(), self.storage.value()

    def index_select(self, dim: int, idx) -> SparseTensor:
        """Rows ``idx`` (any order, repeats allowed) as a new ``(len(idx), n_cols)`` tensor.

        .. math:: B_{k\\cdot} = A_{\\mathrm{idx}_k\\cdot}

        Row ``k`` of the result holds the stored entries of row ``idx[k]`` in their stored order;
        ``storage.row()`` of the result is ``k`` for each of them.
        """
        import torch

        if dim != 0:
            raise NotImplementedError("the torch_sparse stand-in gathers rows (dim=0) only")
        st = self.storage
        idx = torch.as_tensor(idx, device=st.row().device)
        if idx.dtype == torch.bool:
            raise NotImplementedError("the torch_sparse stand-in gathers rows by an integer index tensor only")
        idx = idx.long().reshape(-1)
        n_rows = st.sparse_sizes()[0]
        if idx.numel() and (int(idx.min()) < -n_rows or int(idx.max()) >= n_rows):
            raise IndexError(f"row index out of range for {n_rows} rows")
        idx = torch.where(idx < 0, idx + n_rows, idx)
        count = st.rowcount()[idx]                                  # entries contributed by each output row
        new_row = torch.repeat_interleave(torch.arange(idx.numel(), device=idx.device), count)
        start = st.rowptr()[idx]                                    # where each gathered row starts
        first = torch.cumsum(count, dim=0) - count                  # where it lands in the output
        perm = start[new_row] + torch.arange(new_row.numel(), device=idx.device) - first[new_row]
        value = st.value()[perm] if st.has_value() else None
        out = SparseStorage(row=new_row, col=st.col()[perm], value=value,
                            sparse_sizes=(idx.numel(), st.sparse_sizes()[1]), is_sorted=True)
        return SparseTensor._from_storage(out)

    def __getitem__(self, index) -> SparseTensor:
        import torch

        if isinstance(index, torch.Tensor) or isinstance(index, (list, tuple)) and all(
                isinstance(i, int) for i in index):
            return self.index_select(0, index)
        raise NotImplementedError(f"the torch_sparse stand-in supports A[index_tensor] only; got {type(index).__name__}")

    def to(self, *args, **kwargs) -> SparseTensor:
        return SparseTensor._from_storage(self.storage.to(*args, **kwargs))

    def to_dense(self):
        """The dense ``(n_rows, n_cols)`` matrix (duplicates summed); for checks on small inputs."""
        import torch

        st = self.storage
        val = st.value() if st.has_value() else torch.ones(st.row().numel())
        out = torch.zeros((*st.sparse_sizes(), *val.shape[1:]), dtype=val.dtype, device=val.device)
        out.index_put_((st.row(), st.col()), val, accumulate=True)
        return out

    def __repr__(self) -> str:
        return f"SparseTensor(sparse_sizes={self.sparse_sizes()}, nnz={self.nnz()}, stand-in)"


def is_shim(module: Any) -> bool:
    """Whether ``module`` is this stand-in (not the compiled ``torch_sparse``)."""
    return bool(getattr(module, "__matteralign_shim__", False))


def install() -> bool:
    """Make ``import torch_sparse`` give this module when the real package is not importable.

    ``torch_geometric`` is imported first, so that it records the real package's absence and never
    routes its own sparse code through this stand-in.

    Returns
    -------
    bool
        True when the stand-in is (now) ``sys.modules["torch_sparse"]``, False when the real package is used.
    """
    import importlib

    current = sys.modules.get("torch_sparse")
    if current is not None:
        return is_shim(current)
    try:
        importlib.import_module("torch_sparse")
        return False
    except (ImportError, OSError):  # absent, or its compiled extension does not load against this torch
        sys.modules.pop("torch_sparse", None)
    try:
        import torch_geometric  # noqa: F401  - decides WITH_TORCH_SPARSE before the stand-in exists
    except ImportError:
        pass
    sys.modules["torch_sparse"] = sys.modules[__name__]
    return True
