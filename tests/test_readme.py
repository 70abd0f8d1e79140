"""The README's runnable blocks (```bash runnable``` and ```python runnable```) run as written.

Sample counts are cut to a few dozen (``--n 500`` -> ``--n 60``, ``n=1000`` -> ``n=60``) and the files the
README names (``a.npy``, ``my_structures.extxyz``, ``study.toml``, ...) are made small in a scratch folder;
nothing else is changed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
N = 60
SMALL_STUDY = """name = "readme"
models = ["composition", "random"]
metrics = { cknna = { k = 5 }, dcor2 = {} }
model_metrics = {}
analyses = { matrix = { k = 5 } }
[[datasets]]
name = "g2"
n = 20
"""


def blocks(kind: str) -> list[str]:
    """The README's fenced blocks whose info string is ``<kind> runnable``."""
    text = README.read_text()
    return re.findall(rf"^```{kind} runnable\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """Shell commands of a bash block: continuation lines joined, comments dropped."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        cmd = shlex.split(line, comments=True)
        if cmd:
            out.append(cmd)
    return out


def _small(text: str) -> str:
    text = re.sub(r"--n \d+", f"--n {N}", text)
    return re.sub(r"\bn=\d+", f"n={N}", text)


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    from ase.collections import g2
    from ase.io import write

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((80, 5))
    arrays = {
        name: (Z @ rng.standard_normal((5, d)) + 0.3 * rng.standard_normal((80, d))).astype(np.float32)
        for name, d in (("a", 16), ("b", 12), ("c", 8))
    }
    for name, X in arrays.items():
        np.save(f"{name}.npy", X)
        np.save(f"{name.upper()}.npy", X)
    np.savez("embeddings.npz", chgnet=arrays["a"], sevennet=arrays["b"])
    atoms = [a for a in g2][:100]  # above the default study's largest k (50)
    write("my_structures.extxyz", atoms)
    write("train.extxyz", atoms)
    Path("study.toml").write_text(SMALL_STUDY)
    Path("my_study.toml").write_text(SMALL_STUDY.replace('"readme"', '"mine"'))
    return tmp_path


def test_readme_has_runnable_blocks_and_list_is_shown_as_separate_commands():
    bash = [c for b in blocks("bash") for c in commands(b)]
    assert len(blocks("python")) >= 2 and len(bash) >= 8
    assert ["matteralign", "list", "models"] in bash
    assert "list metrics | models" not in README.read_text()


def test_readme_bash_blocks_run(scratch, capsys):
    from matteralign.cli import main

    for block in blocks("bash"):
        for cmd in commands(_small(block)):
            assert cmd[0] == "matteralign", cmd
            try:
                main(cmd[1:])
            except SystemExit as exc:  # pragma: no cover - the failure message is the assertion
                pytest.fail(f"{shlex.join(cmd)} exited {exc.code}: {capsys.readouterr().out[-2000:]}")
    assert Path("runs/quick/report/index.html").is_file() and Path("runs/mine/store/my_structures").is_dir()
    assert Path("matrix.csv").is_file() and Path("m.parquet").read_bytes()[:4] == b"PAR1"


def test_readme_python_blocks_run(scratch):
    for block in blocks("python"):
        exec(compile(_small(block), "README.md", "exec"), {"__name__": "readme"})
