"""Bad inputs, as a careful user makes them: each ends in one clear error, never a traceback or a silent NaN.

Every case names the error class it must raise and a piece of text its message must contain (the
input: a path, a parameter, a value). Command-line cases must exit with status 2 and print no
traceback; run again with ``--traceback`` they must raise that class. Every bug a user reports becomes
a case here.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from matteralign import metrics
from matteralign.cli import main
from matteralign.errors import (
    ConfigError,
    DatasetError,
    InputError,
    LockedError,
    MatterAlignError,
    StoreError,
    UnknownNameError,
)
from matteralign.store import Store
from matteralign.study import Study

RNG = np.random.default_rng(0)
X = RNG.standard_normal((40, 5))
Y = X @ RNG.standard_normal((5, 4)) + 0.1 * RNG.standard_normal((40, 4))
X80 = RNG.standard_normal((80, 6))
STUDY = {"datasets": [{"name": "g2", "n": 40}], "models": ["composition", "random"]}


@dataclass
class Case:
    """One bad input: ``run(d)`` calls the API, or ``argv`` (with ``{d}`` = the case folder) runs the CLI."""

    id: str
    error: type[BaseException] | None  # None: a command-line usage error (click), which has no class to raise
    needle: str  # the message must contain it (the input it names)
    argv: list[str] | None = None
    run: Any = None
    setup: Any = None  # setup(d, monkeypatch) before the call


def _with(arr, **changes):
    a = np.array(arr, dtype=float)
    for (i, j), v in changes.get("at", {}).items():
        a[i, j] = v
    return a


def _study(**extra):
    return lambda d: Study.from_dict({**STUDY, **extra, "out": str(d / "out")}).validate()


def _toml(d: Path, text: str, name: str = "study.toml") -> None:
    (d / name).write_text(text)


def _study_file(text: str):
    return lambda d, mp: _toml(d, text)


STUDY_TOML = '[[datasets]]\nname = "g2"\nn = 40\n'


def _store_with_layer(d: Path) -> Store:
    st = Store(d / "store")
    st.write_shard("ds", "m", "l", 0, ids=["a", "b", "c"], arrays=[np.ones((2, 3)), np.zeros((1, 3)), np.eye(3)])
    st.finish("ds", "m", "l", n_shards=1)
    return st


def _damage_pooled(d, mp):
    st = _store_with_layer(d)
    for c in (st.path / "ds" / "m" / "l" / "pooled" / "c").rglob("*"):
        if c.is_file():
            c.unlink()


def _files(d: Path, mp) -> None:
    """The inputs the command-line cases read."""
    np.save(d / "a.npy", X)
    np.save(d / "b.npy", Y)
    np.save(d / "short.npy", Y[:30])
    np.save(d / "flat.npy", X[:, 0])
    np.save(d / "huge.npy", X * 1e160)
    np.save(d / "nan.npy", _with(X, at={(3, 1): np.nan}))
    np.savez(d / "strs.npz", s=np.array(["a", "b"]))
    (d / "garbage.npy").write_bytes(os.urandom(500))
    (d / "a.txt").write_text("1 2 3\n")
    (d / "binary.extxyz").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(400))
    (d / "binary.toml").write_bytes(b"\xff\xfe" + os.urandom(300))
    (d / "junk.extxyz").write_text("three\nnot a comment\nH 0 0\n")
    (d / "empty.csv").write_text("smiles\n")
    (d / "nosmiles.csv").write_text("name,value\na,1\n")
    (d / "afile").write_text("x")
    (d / "adir.extxyz").mkdir()
    foreign = zarr.open_group(str(d / "foreign"), mode="w")
    foreign.attrs["something"] = "else"


# ---------------------------------------------------------------------- the metric API
API = [
    Case("nan-in-X", InputError, "X contains non-finite values (1 NaN", run=lambda d: metrics.cknna(
        _with(X, at={(3, 1): np.nan}), Y)),
    Case("inf-in-Y", InputError, "Y contains non-finite values (0 NaN, 1 inf", run=lambda d: metrics.unbiased_cka(
        X, _with(Y, at={(0, 0): np.inf}))),
    Case("1d-X", InputError, "X must be 2-D", run=lambda d: metrics.cknna(X[:, 0], Y)),
    Case("3d-Y", InputError, "Y must be 2-D", run=lambda d: metrics.mutual_knn(X, Y[None])),
    Case("string-dtype", InputError, "X must hold numbers", run=lambda d: metrics.cka(np.array([["a"] * 3] * 8), Y[:8])),
    Case("rows-differ", InputError, "Y has 30", run=lambda d: metrics.cknna(X, Y[:30])),
    Case("too-few-samples", InputError, "X has 3 samples", run=lambda d: metrics.dcor.distance_correlation(X[:3], Y[:3])),
    Case("no-features", InputError, "X has no features", run=lambda d: metrics.cka(np.zeros((10, 0)), Y[:10])),
    Case("constant-rows", InputError, "rows of X are identical", run=lambda d: metrics.cka(np.ones((10, 3)), Y[:10])),
    Case("k-zero", InputError, "k must be at least 1; got 0", run=lambda d: metrics.cknna(X, Y, k=0)),
    Case("k-too-large", InputError, "k=40 is too large for 40 samples", run=lambda d: metrics.mutual_knn(X, Y, k=40)),
    Case("k-float", InputError, "2.5", run=lambda d: metrics.cknna(X, Y, k=2.5)),
    Case("k-bool", InputError, "True", run=lambda d: metrics.mutual_knn(X, Y, k=True)),
    Case("id-method", InputError, "method must be one of", run=lambda d: metrics.intrinsic_dimension(X, method="pca")),
    Case("dcor-precision", InputError, "'float16'", run=lambda d: metrics.dcor.distance_correlation(
        X, Y, precision="float16")),
    Case("unknown-metric", UnknownNameError, "unknown metric 'cknn'. Did you mean 'cknna'",
         run=lambda d: metrics.get_metric("cknn")),
    Case("pairwise-unknown-metric", UnknownNameError, "'ckaa'", run=lambda d: metrics.pairwise({"a": X, "b": Y},
                                                                                              ["ckaa"])),
    Case("normalize-method", InputError, "'l3'", run=lambda d: metrics.normalize(X, method="l3")),
    Case("huge-as-given", InputError, "X holds values of magnitude up to 2.4e+160", run=lambda d: metrics.get_metric(
        "cka").function(X * 1e160, Y)),
    Case("tiny-as-given", InputError, "Y holds values of magnitude up to", run=lambda d: metrics.get_metric(
        "dcor").function(X, Y * 1e-200)),
    Case("huge-as-given-knn", InputError, "X holds values of magnitude up to", run=lambda d: metrics.get_metric(
        "mutual_knn").function(X * 1e300, Y)),
    Case("huge-normalised-cka", None, "", run=lambda d: _same(metrics.cka(X * 1e160, Y * 1e-160), metrics.cka(X, Y))),
    Case("huge-normalised-cknna", None, "", run=lambda d: _same(metrics.cknna(X * 1e160, Y), metrics.cknna(X, Y))),
    Case("huge-normalised-id", None, "", run=lambda d: _same(metrics.intrinsic_dimension(X80 * 1e250),
                                                             metrics.intrinsic_dimension(X80))),
    # `compare -m intrinsic_dimension` on 40 samples refused TwoNN for its unused default k = 50
    Case("twonn-fewer-samples-than-k", None, "", run=lambda d: _same(metrics.intrinsic_dimension(X),
                                                                     metrics.intrinsic_dimension(X, k=3))),
    Case("mle-k-over-n", InputError, "k=50 is too large for 40 samples", run=lambda d: metrics.intrinsic_dimension(
        X, method="mle")),
]


def _same(a, b):
    """Extremes computed correctly: the value equals the one on the rescaled input (no error)."""
    assert np.isfinite(a) and a == pytest.approx(b, rel=1e-12)


# ---------------------------------------------------------------------- compare
COMPARE = [
    Case("compare-missing-file", InputError, "missing.npy", ["compare", "{d}/a.npy", "{d}/missing.npy"]),
    Case("compare-txt", InputError, "a.txt", ["compare", "{d}/a.npy", "{d}/a.txt"]),
    Case("compare-garbage-npy", InputError, "garbage.npy", ["compare", "{d}/a.npy", "{d}/garbage.npy"]),
    Case("compare-1d", InputError, "flat.npy", ["compare", "{d}/a.npy", "{d}/flat.npy"]),
    Case("compare-strings", InputError, "strs.npz:s", ["compare", "{d}/a.npy", "{d}/strs.npz"]),
    Case("compare-rows-differ", InputError, "30", ["compare", "{d}/a.npy", "{d}/short.npy"]),
    Case("compare-nan", InputError, "non-finite", ["compare", "{d}/a.npy", "{d}/nan.npy"]),
    Case("compare-k-abc", None, "'--k'", ["compare", "{d}/a.npy", "{d}/b.npy", "--k", "abc"]),
    Case("compare-k-large", InputError, "k=500", ["compare", "{d}/a.npy", "{d}/b.npy", "--k", "500"]),
    Case("compare-k-zero", InputError, "got 0", ["compare", "{d}/a.npy", "{d}/b.npy", "--k", "0"]),
    Case("compare-unknown-metric", UnknownNameError, "'cnkka'", ["compare", "{d}/a.npy", "{d}/b.npy", "-m", "cnkka"]),
    Case("compare-normalize", InputError, "'l7'", ["compare", "{d}/a.npy", "{d}/b.npy", "--normalize", "l7"]),
    Case("compare-huge-none", InputError, "magnitude up to", ["compare", "{d}/a.npy", "{d}/huge.npy", "--normalize",
                                                              "none", "-m", "cka"]),
    Case("compare-out-ext", InputError, "m.txt", ["compare", "{d}/a.npy", "{d}/b.npy", "--out", "{d}/m.txt"]),
    Case("compare-out-proc", OSError, "/proc/nowhere", ["compare", "{d}/a.npy", "{d}/b.npy", "--out",
                                                         "/proc/nowhere/t.csv"]),
    Case("compare-out-under-file", OSError, "afile", ["compare", "{d}/a.npy", "{d}/b.npy", "--out", "{d}/afile/t.csv"]),
    Case("compare-one-input", InputError, "two", ["compare", "{d}/a.npy"]),
    Case("compare-npz-key", InputError, "'zz'", ["compare", "{d}/a.npy", "{d}/strs.npz:zz"]),
]

# ---------------------------------------------------------------------- dataset files
DATASETS = [
    Case("extxyz-binary", DatasetError, "binary.extxyz", ["extract", "-d", "{d}/binary.extxyz", "-m", "composition",
                                                          "--store", "{d}/s"]),
    Case("extxyz-missing", DatasetError, "none.extxyz", ["extract", "-d", "{d}/none.extxyz", "-m", "composition",
                                                         "--store", "{d}/s"]),
    Case("extxyz-junk", DatasetError, "junk.extxyz", ["extract", "-d", "{d}/junk.extxyz", "-m", "composition",
                                                      "--store", "{d}/s"]),
    Case("dataset-dir", DatasetError, "adir.extxyz", ["extract", "-d", "{d}/adir.extxyz", "-m", "composition",
                                                      "--store", "{d}/s"]),
    Case("csv-empty", DatasetError, "empty.csv", ["extract", "-d", "{d}/empty.csv", "-m", "morgan", "--store", "{d}/s"]),
    Case("csv-no-smiles", DatasetError, "nosmiles.csv", ["extract", "-d", "{d}/nosmiles.csv", "-m", "morgan",
                                                          "--store", "{d}/s"]),
    Case("dataset-typo", UnknownNameError, "'moleculs'", ["extract", "-d", "moleculs", "-m", "composition",
                                                          "--store", "{d}/s"]),
    Case("model-typo", UnknownNameError, "'compositon'", ["extract", "-d", "g2", "-m", "compositon", "--store", "{d}/s"]),
    Case("extract-n-abc", None, "'--n'", ["extract", "-d", "g2", "-m", "composition", "--n", "abc"]),
]

# ---------------------------------------------------------------------- study files
STUDIES = [
    Case("study-binary", ConfigError, "binary.toml", ["run", "{d}/binary.toml"]),
    Case("study-missing", ConfigError, "nope.toml", ["run", "{d}/nope.toml"]),
    Case("study-not-toml", ConfigError, "study.toml", ["run", "{d}/study.toml"], setup=_study_file("models = [\n")),
    Case("study-unknown-key", ConfigError, "modles", ["run", "{d}/study.toml"],
         setup=_study_file('modles = ["random"]\n' + STUDY_TOML)),
    Case("study-no-models", ConfigError, "models", ["run", "{d}/study.toml"], setup=_study_file(STUDY_TOML)),
    Case("study-k-zero", ConfigError, "metrics.cknna: k = 0", ["run", "{d}/study.toml"],
         setup=_study_file('models = ["random", "composition"]\nmetrics = { cknna = { k = 0 } }\n' + STUDY_TOML)),
    Case("study-k-string", ConfigError, "'abc'", ["run", "{d}/study.toml"],
         setup=_study_file('models = ["random", "composition"]\nmetrics = { cknna = { k = "abc" } }\n' + STUDY_TOML)),
    Case("study-analysis-option", ConfigError, "analyses.tree: unknown option(s) ['depth']", ["run", "{d}/study.toml"],
         setup=_study_file('models = ["random", "composition"]\nanalyses = { tree = { depth = 3 } }\n' + STUDY_TOML)),
    Case("study-n-abc", None, "'--n'", ["run", "--n", "abc"]),
    Case("study-k-over-n", ConfigError, "k = 45", run=_study(metrics={"cknna": {"k": 45}})),
    Case("study-metric-param", ConfigError, "['kk']", run=_study(metrics={"mutual_knn": {"kk": 3}})),
    Case("study-id-method", ConfigError, "'pca'", run=_study(model_metrics={"intrinsic_dimension": [{"method": "pca"}]})),
    Case("study-dcor-precision", ConfigError, "'half'", run=_study(metrics={"dcor": {"precision": "half"}})),
    Case("study-unknown-metric", UnknownNameError, "'ckna'", run=_study(metrics={"ckna": {}})),
    Case("study-metric-arity", ConfigError, "'intrinsic_dimension' measures one model",
         run=_study(metrics={"intrinsic_dimension": {}})),
    Case("study-unknown-analysis", UnknownNameError, "'treee'", run=_study(analyses={"treee": {}})),
    Case("study-analysis-metric", ConfigError, "'cknn'", run=_study(analyses={"tree": {"metric": "cknn"}})),
    Case("study-analysis-k", ConfigError, "analyses.matrix: k = -1", run=_study(analyses={"matrix": {"k": -1}})),
    Case("study-analysis-ks", ConfigError, "ks = [0, 5]", run=_study(analyses={"ksweep": {"ks": [0, 5]}})),
    Case("study-analysis-dataset", ConfigError, "'qm9x'", run=_study(analyses={"ood": {"id_dataset": "qm9x"}})),
    Case("study-normalize", ConfigError, "'l1'", run=_study(normalize="l1")),
    Case("study-n-tiny", ConfigError, "datasets.0.n", run=lambda d: Study.from_dict(
        {**STUDY, "datasets": [{"name": "g2", "n": 2}]})),
    Case("study-model-twice", ConfigError, "listed twice", run=lambda d: Study.from_dict(
        {**STUDY, "models": ["random", "random"]})),
    Case("study-unknown-model", UnknownNameError, "'randon'", run=_study(models=["randon"])),
    Case("study-unknown-dataset", UnknownNameError, "'g3'", run=_study(datasets=[{"name": "g3"}])),
]


# ---------------------------------------------------------------------- the store
_HOLDERS: list = []


def _locked_out(d, mp):
    """Another process holds the output folder (it runs until the case ends)."""
    import subprocess
    import sys

    code = (f"from matteralign._lock import FolderLock; import time; FolderLock({str(d / 'busy')!r}).acquire(); "
            "print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    _HOLDERS.append(proc)
    assert proc.stdout.readline().strip() == "held"
    _toml(d, 'models = ["random", "composition"]\n' + STUDY_TOML)


def _wrong_version(d: Path) -> None:
    root = zarr.open_group(str(d / "v9"), mode="w")
    root.attrs["matteralign_store"] = 9
    Store(d / "v9")


def _truncated_root(d: Path) -> None:
    _store_with_layer(d)
    meta = d / "store" / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:10])
    Store(d / "store")


STORE = [
    Case("store-is-file", StoreError, "afile", run=lambda d: Store(d / "afile"), setup=_files),
    Case("store-foreign", StoreError, "foreign", run=lambda d: Store(d / "foreign"), setup=_files),
    Case("store-version", StoreError, "format version 9", run=_wrong_version),
    Case("store-truncated-root", StoreError, "store", run=_truncated_root),
    Case("store-url", StoreError, "s3://bucket/x", run=lambda d: Store("s3://bucket/x")),
    Case("store-mode", InputError, "'w'", run=lambda d: Store(d / "s", mode="w")),
    Case("store-read-missing", StoreError, "ds/m/zz", run=lambda d: _store_with_layer(d).read("ds", "m", "zz")),
    Case("store-pooling", UnknownNameError, "'median'", run=lambda d: _store_with_layer(d).read("ds", "m", "l",
                                                                                               pooling="median")),
    Case("store-missing-chunk", StoreError, "ds/m/l: array 'pooled'", run=lambda d: Store(d / "store").read(
        "ds", "m", "l"), setup=_damage_pooled),
    Case("store-nan-shard", InputError, "'a'", run=lambda d: Store(d / "s").write_shard(
        "d", "m", "l", 0, ids=["a"], arrays=[np.array([[np.nan]])])),
    Case("store-readonly-write", StoreError, "read-only", run=lambda d: Store(
        _store_with_layer(d).path, mode="r").write_shard("d", "m", "l", 0, ids=["a"], arrays=[np.ones((1, 2))])),
    Case("cli-store-verify-missing", StoreError, "nowhere", ["store", "verify", "{d}/nowhere"]),
    Case("cli-store-repair-file", StoreError, "afile", ["store", "repair", "{d}/afile"]),
    Case("cli-store-verify-foreign", StoreError, "foreign", ["store", "verify", "{d}/foreign"]),
    Case("cli-locked-out", LockedError, "is in use by process", ["run", "{d}/study.toml", "--out", "{d}/busy"],
         setup=_locked_out),
]


# ---------------------------------------------------------------------- the file system
def _full_disk(d, mp):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(d / "t.csv"))

    mp.setattr("matteralign._compare.write_table", full)


def _read_only(d, mp):
    def ro(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(d / "ro" / "store"))

    mp.setattr("matteralign.store.Store._open_root", ro)


FILESYSTEM = [
    Case("run-out-proc", OSError, "/proc/matteralign-study", ["run", "{d}/study.toml", "--out",
                                                              "/proc/matteralign-study"],
         setup=_study_file('models = ["random", "composition"]\n' + STUDY_TOML)),
    Case("run-out-file", OSError, "afile", ["run", "{d}/study.toml", "--out", "{d}/afile"],
         setup=lambda d, mp: (_files(d, mp), _toml(d, 'models = ["random", "composition"]\n' + STUDY_TOML))),
    Case("extract-store-proc", OSError, "/proc/matteralign-store", ["extract", "-d", "g2", "-m", "composition",
                                                                   "--n", "5", "--store", "/proc/matteralign-store"]),
    Case("compare-full-disk", OSError, "t.csv", ["compare", "{d}/a.npy", "{d}/b.npy", "--out", "{d}/t.csv"],
         setup=lambda d, mp: (_files(d, mp), _full_disk(d, mp))),
    Case("extract-read-only", OSError, "ro/store", ["extract", "-d", "g2", "-m", "composition", "--n", "5",
                                                     "--store", "{d}/ro/store"], setup=_read_only),
    Case("study-is-dir", ConfigError, "adir.extxyz", ["run", "{d}/adir.extxyz"]),
    Case("list-extra-arg", None, "extra", ["list", "models", "extra"]),
    Case("unknown-command", None, "frobnicate", ["frobnicate"]),
]

CASES = API + COMPARE + DATASETS + STUDIES + STORE + FILESYSTEM


def test_the_corpus_is_large_and_covers_every_area():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    areas = {"api": API, "compare": COMPARE, "datasets": DATASETS, "studies": STUDIES, "store": STORE,
             "filesystem": FILESYSTEM}
    assert all(len(v) >= 5 for v in areas.values())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys):
    try:
        _check(case, tmp_path, monkeypatch, capsys)
    finally:
        while _HOLDERS:
            proc = _HOLDERS.pop()
            proc.kill()
            proc.wait()


def _check(case: Case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "1000")  # one line stays one line
    d = tmp_path
    if case.argv is not None and case.setup is None:
        _files(d, monkeypatch)
    if case.setup is not None:
        case.setup(d, monkeypatch)
    if case.argv is None:
        if case.error is None:  # computed correctly: the case checks the value itself
            case.run(d)
            return
        with pytest.raises(case.error) as err:
            case.run(d)
        assert isinstance(err.value, MatterAlignError)
        assert case.needle in str(err.value)
        return
    argv = [a.format(d=d) for a in case.argv]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    printed = capsys.readouterr()
    assert exc.value.code == 2, printed.err
    assert "Traceback" not in printed.err and "Traceback" not in printed.out
    assert case.needle in " ".join(printed.err.split()), printed.err
    if case.error is not None:
        lines = [ln for ln in printed.err.splitlines() if ln.strip()]
        assert lines[0].startswith("error:") and lines[-1].startswith("hint:") and len(lines) == 2, printed.err
        with pytest.raises(case.error):  # --traceback keeps the exception (and its stack)
            main(["--traceback", *argv])


def test_corpus_outcomes_by_class(tmp_path):
    """How each class of bad input ends (written for the record; asserted by test_bad_input)."""
    counts: dict[str, int] = {}
    for c in CASES:
        key = ("cli " if c.argv else "api ") + (c.error.__name__ if c.error else
                                                 ("usage error" if c.argv else "computed correctly"))
        counts[key] = counts.get(key, 0) + 1
    (tmp_path / "outcomes.json").write_text(json.dumps(counts, sort_keys=True))
    assert sum(counts.values()) == len(CASES)
