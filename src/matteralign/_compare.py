"""What ``matteralign compare`` needs besides the metrics: its inputs, its parameters and its output files.

Inputs are ``.npy`` files, ``.npz`` archives (every array, or one by ``FILE.npz:KEY``) or models of an
embedding store (``--store PATH --dataset D --model A --model B``, aligned on their shared sample ids).
Per-metric parameters come as ``METRIC.PARAM=VALUE``. The tidy table goes to ``.csv``, ``.parquet`` or
``.json`` by the output file's extension.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "read_arrays",
    "read_store",
    "parse_params",
    "metric_list",
    "check_output",
    "write_table",
    "OUTPUT_FORMATS",
]

#: Output file extensions and what they hold.
OUTPUT_FORMATS = (".csv", ".parquet", ".json")


def _unique(name: str, taken: dict) -> str:
    if name not in taken:
        return name
    i = 2
    while f"{name}-{i}" in taken:
        i += 1
    return f"{name}-{i}"


def _check_2d(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype.kind not in "fiu" or arr.ndim != 2:
        raise InputError(
            f"{where} holds an array of dtype {arr.dtype} and shape {arr.shape}; expected a 2-D "
            "numeric array (n_samples, n_features)."
        )
    return arr


def read_arrays(paths: Sequence[str]) -> dict[str, np.ndarray]:
    """``{name: array}`` from ``.npy`` files and ``.npz`` archives (``FILE.npz:KEY`` picks one array).

    A ``.npy`` input is named after its file stem, an array of an ``.npz`` archive ``stem:key``. Names stay
    unique (``-2``, ``-3``, ...).
    """
    reps: dict[str, np.ndarray] = {}
    for raw in paths:
        path, _, key = raw.partition(".npz:")
        path = path + ".npz" if key else path
        p = Path(path)
        if not p.is_file():
            raise InputError(f"array file {path!r} does not exist.")
        suffix = p.suffix.lower()
        if suffix not in (".npy", ".npz"):
            raise InputError(
                f"array file {raw!r}: expected a .npy file or a .npz archive; got {suffix or 'no'} extension."
            )
        try:
            loaded = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"could not read {path!r} as a {suffix} file: {exc}") from exc
        if suffix == ".npy":
            reps[_unique(p.stem, reps)] = _check_2d(loaded, repr(path))
            continue
        with loaded:
            keys = list(loaded.files)
            if key:
                if key not in keys:
                    raise InputError(f"{path!r} has no array {key!r}; it holds {keys}.")
                keys = [key]
            if not keys:
                raise InputError(f"{path!r} holds no arrays.")
            for k in keys:
                reps[_unique(f"{p.stem}:{k}", reps)] = _check_2d(loaded[k], f"{path}:{k}")
    return reps


def read_store(
    path: str, dataset: str, models: Sequence[str], *, layer: str | None = None, pooling: str = "mean"
) -> tuple[dict[str, np.ndarray], int]:
    """Pooled embeddings of ``models`` on ``dataset`` from a store, rows aligned on their shared sample ids.

    Returns the arrays (one per model, the same samples in the first model's order) and the number of samples
    each model had before alignment was cut to the shared ones (the smallest of them).
    """
    from .models import get_spec
    from .store import Store

    if not dataset:
        raise InputError("--store needs --dataset (the dataset's name in the store).")
    if len(models) < 2:
        raise InputError(f"--store needs at least two --model; got {len(models)}.")
    store = Store(path, mode="r")
    read = {}
    for m in models:
        lay = layer
        if lay is None:
            try:
                lay = get_spec(m).default_layer
            except Exception:
                held = sorted(
                    {r["layer"] for r in store.list() if r.get("dataset") == dataset and r.get("model") == m}
                )
                if len(held) != 1:
                    raise InputError(
                        f"model {m!r} is not registered here and the store holds layers {held} of it "
                        f"on {dataset!r}; pass --layer."
                    ) from None
                lay = held[0]
        ids, X = store.read(dataset, m, lay, pooling=pooling)
        read[m] = (ids, X)
    shared = set.intersection(*(set(ids) for ids, _ in read.values()))
    first_ids = read[models[0]][0]
    order = [i for i in first_ids if i in shared]
    if len(order) < 4:
        raise InputError(
            f"the models {list(models)} share {len(order)} samples of {dataset!r}; at least 4 are needed."
        )
    out = {}
    for m, (ids, X) in read.items():
        pos = {sid: j for j, sid in enumerate(ids)}
        out[m] = X[[pos[i] for i in order]]
    return out, min(len(ids) for ids, _ in read.values())


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["cknna.k=25", "information_imbalance.k=1"]`` -> ``{"cknna": {"k": 25}, ...}`` (values as JSON)."""
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        lhs, sep, rhs = v.partition("=")
        metric, dot, param = lhs.strip().rpartition(".")
        if not sep or not dot or not metric or not param or rhs == "":
            raise InputError(f"--param {v!r}: expected METRIC.PARAM=VALUE, e.g. cknna.k=25.")
        out.setdefault(metric, {})[param] = _value(rhs.strip())
    return out


def metric_list(metrics: Sequence[str], params: dict[str, dict[str, Any]], k: int | None):
    """``(name, params)`` pairs for :func:`~matteralign.metrics.pairwise`; ``k`` fills every selected metric's
    ``k`` that ``params`` does not set. A parameter for a metric that is not selected is an error."""
    from .metrics import get_metric

    names = list(dict.fromkeys(metrics))
    stray = sorted(set(params) - set(names))
    if stray:
        raise InputError(
            f"--param names metric(s) {stray} that are not selected; selected: {names} (add --metric NAME)."
        )
    out = []
    for name in names:
        spec = get_metric(name)
        given = dict(params.get(name, {}))
        if k is not None and "k" in spec.params and "k" not in given:
            given["k"] = k
        out.append((name, given))
    return out


def check_output(out: str) -> str:
    """The output format of ``out`` (its extension, one of :data:`OUTPUT_FORMATS`); InputError otherwise."""
    suffix = Path(out).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(
            f"--out {out!r}: the format follows the extension, one of {list(OUTPUT_FORMATS)}; got "
            f"{suffix or 'none'!r}."
        )
    return suffix


def write_table(table, out: str) -> str:
    """Write the tidy table to ``out`` in the format of its extension; returns the format's name."""
    p = Path(out)
    suffix = check_output(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.to_csv(p, index=False)
    elif suffix == ".parquet":
        table.to_parquet(p, index=False)
    else:
        table.to_json(p, orient="records", indent=1, double_precision=15)
    return suffix[1:]
