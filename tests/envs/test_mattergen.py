"""The parts of the MatterGen adapter that run without its environment: folder checks, folder hash,
the weights-only switch, registry and study metadata, the bundled scale table."""

from __future__ import annotations

import json
import os

import pytest

from matteralign import envs, models
from matteralign.errors import ModelError
from matteralign.models import hub_mattergen as hm
from matteralign.models.base import file_sha256


def _folder(tmp_path, *, ckpt=b"weights", config=b"lightning_module: {}\n"):
    d = tmp_path / "mattergen_base"
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.yaml").write_bytes(config)
    if ckpt is not None:
        (d / "checkpoints" / "last.ckpt").write_bytes(ckpt)
    return d


def test_checkpoint_folder_checks_name_the_path(tmp_path):
    d = _folder(tmp_path)
    assert hm.MatterGenExtractor._check_checkpoint(d, "mattergen") == str(d)
    with pytest.raises(ModelError, match="pass checkpoint=DIR"):
        hm.MatterGenExtractor._check_checkpoint(None, "mattergen")
    missing = tmp_path / "nope"
    with pytest.raises(ModelError, match=f"{missing}' does not exist; expected a folder holding config.yaml"):
        hm.MatterGenExtractor._check_checkpoint(missing, "mattergen")
    with pytest.raises(ModelError, match=f"{d / 'config.yaml'}' is not a folder"):
        hm.MatterGenExtractor._check_checkpoint(d / "config.yaml", "mattergen")
    bare = _folder(tmp_path / "b", ckpt=None)
    with pytest.raises(ModelError, match=f"{bare}' of model 'mattergen' lacks checkpoints/last.ckpt"):
        hm.MatterGenExtractor._check_checkpoint(bare, "mattergen")


def test_folder_hash_covers_both_files(tmp_path):
    import hashlib

    d = _folder(tmp_path)
    want = hashlib.sha256(f"config.yaml:{file_sha256(d / 'config.yaml')}\n"
                          f"checkpoints/last.ckpt:{file_sha256(d / 'checkpoints' / 'last.ckpt')}\n".encode()).hexdigest()
    h = hm.checkpoint_dir_sha256(d)
    assert h == want
    (d / "config.yaml").write_bytes(b"lightning_module: {x: 1}\n")
    assert hm.checkpoint_dir_sha256(d) != h
    h2 = hm.checkpoint_dir_sha256(d)
    (d / "checkpoints" / "last.ckpt").write_bytes(b"other weights")
    assert hm.checkpoint_dir_sha256(d) != h2


def test_weights_only_switch_is_scoped(monkeypatch):
    key = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    monkeypatch.delenv(key, raising=False)
    with hm._no_weights_only():
        assert os.environ[key] == "1"
    assert key not in os.environ
    monkeypatch.setenv(key, "0")
    with pytest.raises(RuntimeError), hm._no_weights_only():
        raise RuntimeError("load failed")
    assert os.environ[key] == "0"


def test_registry_study_kind_and_environment():
    spec = models.get_spec("mattergen")
    assert spec.env == "mattergen" and spec.requires_checkpoint and spec.family == "mattergen"
    assert spec.layers == hm.LAYERS and spec.default_layer == "node_embedding_t0.01"
    assert [hm.TIMES[x] for x in spec.layers] == [0.01, 0.1, 0.5]
    assert (spec.kind, spec.embedding_type) == ("generative", "generative")
    fam = envs.FAMILIES["mattergen"]
    assert fam.no_deps == ("mattergen==1.0.3",) and fam.source_builds == ("torch-scatter==2.1.2",)
    assert fam.torch == "2.13.0" and fam.unavailable is None
    assert not any(r.startswith(("torch-sparse", "torch_sparse")) for r in fam.requirements)


def test_bundled_scale_table_names_every_gemnet_t_factor():
    table = json.loads((hm.scale_root() / "common" / "gemnet" / "gemnet-dT.json").read_text())
    # GemNetT with 4 interaction blocks: per block a triplet interaction (2 factors) and an atom update (1),
    # and 5 output blocks (2 each): the names its ScalingFactor modules look up
    want = {f"TripInteraction_{i}_{s}" for i in range(1, 5) for s in ("had_rbf", "sum_cbf")}
    want |= {f"AtomUpdate_{i}_sum" for i in range(1, 5)} | {f"OutBlock_{i}_{s}" for i in range(5) for s in ("sum", "had")}
    assert set(table) == want and all(v == 1.0 for v in table.values())
