"""Model environments without building one: keys, paths, clear errors, the worker's dataset format."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign import envs, models
from matteralign.errors import InputError, ModelError, UnknownNameError
from matteralign.execute import extract
from matteralign.execute.placement import model_info
from matteralign.execute.wire import read_samples, write_samples


@pytest.fixture()
def empty_env_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MATTERALIGN_ENV_DIR", str(tmp_path / "envs"))
    monkeypatch.delenv("MATTERALIGN_ENV", raising=False)
    return tmp_path / "envs"


def test_env_path_is_keyed_by_requirements(empty_env_dir, monkeypatch):
    p = envs.env_path("mace")
    assert p.parent == empty_env_dir
    assert p.name == f"mace-{envs.env_key('mace')}" and len(envs.env_key("mace")) == 12
    assert envs.env_key("mace") != envs.env_key("orb")
    before = envs.env_key("orb")
    monkeypatch.setitem(envs.FAMILIES, "orb", envs.EnvSpec("orb", ("orb-models==0.5.4",)))
    assert envs.env_key("orb") != before  # a new pin gives a new environment
    assert not envs.exists("mace")


def test_unknown_family():
    with pytest.raises(UnknownNameError, match="model environment"):
        envs.env_key("nope")


def test_default_root_is_per_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("MATTERALIGN_ENV_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert envs.env_root() == tmp_path / "matteralign" / "envs"


def test_registry_names_env_and_checkpoint(empty_env_dir):
    rows = {r["name"]: r for r in model_info()}
    for name, fam in [("mace-mp", "mace"), ("mace-off", "mace"), ("mace-omat", "mace"), ("uma-s", "fairchem"),
                      ("uma-m", "fairchem"), ("esen", "fairchem"), ("orb-v2", "orb"), ("orb-v3-direct", "orb"),
                      ("orb-v3-conservative", "orb")]:
        assert models.get_spec(name).env == fam
        assert rows[name]["available"] is False
        assert f"matteralign env create {fam}" in rows[name]["reason"]


def test_load_in_wrong_env_names_the_command(empty_env_dir):
    with pytest.raises(ModelError, match="matteralign env create mace"):
        models.load("mace-mp", checkpoint="x.model")
    with pytest.raises(ModelError, match="matteralign env create fairchem"):
        models.load("uma-s")


def test_missing_env_is_named_before_any_work(empty_env_dir, tmp_path):
    from matteralign.samples import Dataset, Sample

    ds = Dataset("d", [Sample(id="a")])
    with pytest.raises(ModelError, match=r"`matteralign env create orb`"):
        extract(tmp_path / "store", ds, "orb-v2", options={"checkpoint": "x.ckpt"})


def test_eqv2_env_runs_fairchem_1x_on_torch_2_13(empty_env_dir):
    """EquiformerV2's env: fairchem-core 1.10 --no-deps on torch 2.13.0 (its torch~=2.4 pin is not honoured)."""
    spec = envs.FAMILIES["eqv2"]
    assert spec.unavailable is None and spec.torch == "2.13.0"
    assert spec.no_deps == ("fairchem-core==1.10.0",) and "torch-scatter==2.1.2" in spec.source_builds
    assert "numpy<2" in spec.requirements and not any(r.startswith("torch==") for r in spec.requirements)
    assert "torch~=2.4.0" in (envs.__doc__ or "")  # the declared pin and why it is not followed are documented
    assert models.get_spec("equiformer-v2").env == "eqv2"
    row = next(r for r in model_info() if r["name"] == "equiformer-v2")
    assert row["env"] == "eqv2" and row["available"] is False
    assert row["reason"] == "needs env eqv2: `matteralign env create eqv2`"
    with pytest.raises(ModelError, match="matteralign env create eqv2"):
        models.load("equiformer-v2", checkpoint="x.pt")


def test_dataset_file_roundtrip(tmp_path):
    from ase.build import bulk, molecule

    from matteralign.samples import Dataset, Sample

    mol = molecule("CH3CH2OH")
    mol.info.update({"charge": -1, "spin": 2, "skip": [1, 2]})
    cr = bulk("NaCl", "rocksalt", a=5.64)
    ds = Dataset("mix", [Sample(id="m", atoms=mol), Sample(id="none", smiles="C"), Sample(id="c", atoms=cr)],
                 meta={"source": "test", "n": 3})
    write_samples(ds, tmp_path / "d.npz")
    back = read_samples(tmp_path / "d.npz")
    assert back.name == "mix" and back.ids == ["m", "none", "c"] and back.meta == ds.meta
    assert back.fingerprint() == ds.fingerprint()
    assert back[1].atoms is None
    assert back[0].atoms.info == {"charge": -1, "spin": 2} and back[2].atoms.info == {}
    for a, b in [(mol, back[0].atoms), (cr, back[2].atoms)]:
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell[:], b.cell[:])
        np.testing.assert_array_equal(a.pbc, b.pbc)


def test_checkpoint_option_parsing():
    from matteralign.cli import _checkpoint_for

    assert _checkpoint_for("mace-mp", ["mace-mp=/a/b.model", "orb-v2=/c.ckpt"]) == "/a/b.model"
    assert _checkpoint_for("orb-v2", ["/only/path.ckpt"]) == "/only/path.ckpt"
    assert _checkpoint_for("esen", ["mace-mp=/a"]) is None
    with pytest.raises(InputError, match="plain paths"):
        _checkpoint_for("esen", ["/a", "/b"])


def test_cli_env_list_and_missing_env(empty_env_dir, capsys):
    from matteralign.cli import main

    main(["env", "list"])
    out = capsys.readouterr().out
    assert "mace" in out and "fairchem" in out and "orb" in out and "eqv2" in out
    with pytest.raises(SystemExit):
        main(["extract", "--dataset", "g2", "--n", "2", "--model", "mace-mp", "--checkpoint", "x.model",
              "--store", str(empty_env_dir.parent / "store")])
    out = capsys.readouterr().err
    assert "matteralign env create mace" in " ".join(out.split())


def _fake_build(monkeypatch, fail_at: str | None = None):
    """Replace the pip/venv steps of envs.create by a fast fake (the interpreter is this one)."""
    import os
    import sys
    from pathlib import Path

    from matteralign.errors import ConfigError

    calls = []

    def fake_run(cmd, log, *, env=None):
        cmd = [str(c) for c in cmd]
        calls.append(cmd)
        if fail_at and any(fail_at in c for c in cmd):
            raise ConfigError(f"command failed: {' '.join(cmd)}")
        if cmd[1:3] == ["-m", "venv"]:
            bindir = Path(cmd[3]) / "bin"
            bindir.mkdir(parents=True)
            os.symlink(sys.executable, bindir / "python")
            (bindir / "tool").write_text(f"#!{cmd[3]}/bin/python\n")

    monkeypatch.setattr(envs, "_run", fake_run)
    monkeypatch.setattr(envs, "_versions_in", lambda py: {"torch": "2.13.0"})
    return calls


def test_create_is_atomic_and_reused(empty_env_dir, monkeypatch):
    calls = _fake_build(monkeypatch)
    path = envs.create("orb")
    assert path == envs.env_path("orb") and envs.exists("orb")
    assert [p.name for p in empty_env_dir.iterdir() if ".tmp-" in p.name] == []
    man = __import__("json").loads((path / envs.MANIFEST).read_text())
    assert man["family"] == "orb" and man["key"] == envs.env_key("orb") and man["versions"] == {"torch": "2.13.0"}
    assert (path / "bin" / "tool").read_text() == f"#!{path}/bin/python\n"  # scripts point at the final path
    steps = [" ".join(c) for c in calls]
    assert "torch==2.13.0" in steps[1] and "-c" in calls[1]  # torch first, under the constraint
    assert "orb-models==0.5.5" in steps[2] and "--no-deps" in steps[3]
    n = len(calls)
    assert envs.create("orb") == path and len(calls) == n  # built once, then reused
    rows = {r["family"]: r for r in envs.list_envs()}
    assert rows["orb"]["exists"] and rows["orb"]["size_bytes"] > 0 and not rows["mace"]["exists"]


def test_failed_create_leaves_nothing(empty_env_dir, monkeypatch):
    from matteralign.errors import ConfigError

    _fake_build(monkeypatch, fail_at="mace-torch==0.3.16")
    with pytest.raises(ConfigError, match="mace-torch"):
        envs.create("mace")
    assert not envs.exists("mace") and not envs.env_path("mace").exists()
    assert [p.name for p in empty_env_dir.iterdir() if ".tmp-" in p.name] == []


def test_worker_subprocess_writes_the_same_store(empty_env_dir, monkeypatch, tmp_path):
    """execute.extract through a real worker process (a fake env running this Python) equals in-process."""
    import dataclasses
    import stat
    import sys

    from ase.build import bulk, molecule

    from matteralign.models import _registry
    from matteralign.samples import Dataset, Sample
    from matteralign.store import Store

    monkeypatch.setitem(envs.FAMILIES, "fake", envs.EnvSpec("fake", ()))
    _fake_build(monkeypatch)
    path = envs.create("fake")
    py = path / "bin" / "python"
    py.unlink()
    py.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    ds = Dataset("mix", [Sample(id="m", atoms=molecule("CH3CH2OH")), Sample(id="s", smiles="C"),
                         Sample(id="c", atoms=bulk("NaCl", "rocksalt", a=5.64))])
    ref = extract(Store(tmp_path / "ref"), ds, models.load("composition"), progress=False)
    assert ref["n"] == 2
    spec = _registry.MODELS["composition"]
    monkeypatch.setitem(_registry.MODELS, "composition", dataclasses.replace(spec, env="fake"))
    seen = []
    summary = extract(tmp_path / "store", ds, "composition", progress=lambda d, t: seen.append((d, t)))
    assert summary["env"] == "fake" and summary["n"] == 2 and summary["n_skipped"] == 1
    assert seen and seen[-1] == (3, 3)
    with pytest.raises(ModelError, match="runs in the 'fake' model environment"):
        models.load("composition")  # in-process in the wrong env: a clear error
    a = Store(tmp_path / "store").read("mix", "composition", summary["layer"])
    b = Store(tmp_path / "ref").read("mix", "composition", summary["layer"])
    assert a[0] == b[0] == ["m", "c"]
    np.testing.assert_array_equal(a[1], b[1])
    assert Store(tmp_path / "store").provenance("mix", "composition", summary["layer"])["dataset"] == "mix"
    with pytest.raises(UnknownNameError):  # errors in the worker come back as the same class
        extract(tmp_path / "store", ds, "composition", layer="nope")
