"""Faults a study survives: a SIGKILL in every stage, a damaged store, two studies on one folder.

Each killed run is a real ``matteralign run`` process killed with SIGKILL right after a chosen commit
of a chosen stage (extract, energies, measure, analyse) or as the report starts; the rerun must end
with result files byte-identical to an uninterrupted run, and must not redo the units committed
before the kill (energies, metric units and analyses resume per unit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STUDY = """
name = "faults"
models = ["ani-1x", "composition", "random"]
normalize = "l2"
shard_size = 8
energy_samples = 200
allow_partial = true
metrics = {{ cknna = {{ k = 5 }}, mutual_knn = {{ k = 5 }}, unbiased_cka = {{}} }}
model_metrics = {{ intrinsic_dimension = [{{ method = "twonn", k = 5 }}] }}
analyses = {{ matrix = {{ k = 5 }}, tree = {{ k = 5 }}, dimension = {{}} }}
out = "{out}"

[execution]
executor = "inline"

[[datasets]]
name = "g2"
n = 40

[[datasets]]
name = "molecules"
n = 30
"""

#: stage -> (object to wrap, calls after which the process is killed; 0 = as it is called)
KILL_AT = {
    "extract": ("matteralign.store:Store.write_shard", 7),
    "energies": ("matteralign.execute.commit:Committer._commit_energy", 1),
    "measure": ("matteralign.study_runner:_write_parquet", 3),
    "analyse": ("matteralign.study_runner:_save_result", 1),
    "report": ("matteralign.report:write_report", 0),
}

DRIVER = """
import importlib, os, signal, sys
target, after, study = sys.argv[1], int(sys.argv[2]), sys.argv[3]
mod_name, _, attr = target.partition(":")
owner = importlib.import_module(mod_name)
parts = attr.split(".")
for p in parts[:-1]:
    owner = getattr(owner, p)
orig = getattr(owner, parts[-1])
calls = [0]

def wrapped(*a, **k):
    if after == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    out = orig(*a, **k)
    calls[0] += 1
    if calls[0] >= after:
        os.kill(os.getpid(), signal.SIGKILL)
    return out

setattr(owner, parts[-1], wrapped)
from matteralign.cli import main
main(["run", study])
"""


def _study(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(out=out))
    return path


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=900, **kw)


def _results(out: Path) -> dict[str, bytes]:
    """Every result file a rerun must reproduce byte for byte (not the per-unit caches or the report's timings)."""
    files = {}
    for p in sorted((out / "results").rglob("*")):
        rel = p.relative_to(out)
        if p.is_file() and "cache" not in rel.parts and p.suffix in (".csv", ".parquet", ".npz"):
            files[str(rel)] = p.read_bytes()
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    study = _study(tmp, "ref")
    proc = _run(["-m", "matteralign.cli", "run", str(study)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = _results(tmp / "ref")
    assert any("pairs" in f for f in files) and any("energies" in f for f in files)
    return files


def _unit_files(out: Path, stage: str) -> dict[str, int]:
    """The per-unit files of a stage and their modification times (a resumed stage must not rewrite them)."""
    where = {"energies": out / "results" / "energies", "measure": out / "results" / "cache",
             "analyse": out / "results" / "analysis"}.get(stage)
    if where is None or not where.exists():
        return {}
    pats = {"energies": "**/*.npz", "measure": "*/*.parquet", "analyse": "*.pkl"}[stage]
    return {str(p): p.stat().st_mtime_ns for p in where.glob(pats)}


@pytest.mark.parametrize("stage", list(KILL_AT))
def test_sigkill_in_every_stage_resumes_to_identical_results(stage, reference, tmp_path):
    study = _study(tmp_path, "killed")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    target, after = KILL_AT[stage]
    killed = _run([str(driver), target, str(after), str(study)])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = tmp_path / "killed"
    assert (out / ".matteralign.lock").exists()  # the dead run's lock is left behind...
    kept = _unit_files(out, stage)
    if stage in ("energies", "measure", "analyse"):
        assert kept, f"no unit of {stage} was committed before the kill"
    again = _run(["-m", "matteralign.cli", "run", str(study)])  # ...and taken over by the rerun
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert _results(out) == reference
    now = _unit_files(out, stage)
    assert {p: now.get(p) for p in kept} == kept  # committed units were not computed again


def test_damaged_store_is_named_then_repaired_and_recomputed(reference, tmp_path):
    study = _study(tmp_path, "damaged")
    assert _run(["-m", "matteralign.cli", "run", str(study)]).returncode == 0
    out = tmp_path / "damaged"
    chunk = next(p for p in (out / "store" / "g2" / "composition").rglob("*")
                 if p.is_file() and "pooled" in p.parts and "c" in p.parts)
    chunk.write_bytes(chunk.read_bytes()[::-1])  # flipped bytes
    # a model's results must not come back from the caches: the rerun reads the store and stops
    failed = _run(["-m", "matteralign.cli", "run", str(study)])
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    text = " ".join(failed.stderr.split())
    assert "g2/composition/" in text and "'pooled'" in text and "store repair" in text
    verify = _run(["-m", "matteralign.cli", "store", "verify", str(out / "store")])
    assert verify.returncode == 4 and "g2/composition" in verify.stdout  # damage: neither a bug (1) nor bad input (2)
    repair = _run(["-m", "matteralign.cli", "store", "repair", str(out / "store")])
    assert repair.returncode == 0 and "removed" in repair.stdout
    again = _run(["-m", "matteralign.cli", "run", str(study)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert _results(out) == reference
    assert _run(["-m", "matteralign.cli", "store", "verify", str(out / "store")]).returncode == 0


def test_two_studies_on_one_folder(tmp_path):
    first = _study(tmp_path, "shared")
    second = tmp_path / "other.toml"
    second.write_text(first.read_text().replace('name = "faults"', 'name = "other"').replace("k = 5 }, mutual",
                                                                                             "k = 6 }, mutual"))
    driver = tmp_path / "slow.py"
    driver.write_text(DRIVER.replace("os.kill(os.getpid(), signal.SIGKILL)", "__import__('time').sleep(8)"))
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, str(driver), "matteralign.study_runner:_write_parquet", "1", str(first)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lock = tmp_path / "shared" / ".matteralign.lock"
        deadline = time.time() + 300
        while not (lock.exists() and lock.read_text().strip()) and time.time() < deadline:
            time.sleep(0.2)
        refused = _run(["-m", "matteralign.cli", "run", str(second)])
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        text = " ".join(refused.stderr.split())
        assert f"process {proc.pid} on host" in text
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "shared" / "results" / "pairs.parquet").exists()
