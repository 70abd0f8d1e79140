"""The model registry: lazy specs, close-match errors, availability, options, custom registration."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from matteralign import models
from matteralign.errors import InputError, MissingDependencyError, ModelError, UnknownNameError
from matteralign.models import Extractor, ModelSpec, register
from matteralign.samples import Sample


class Upper(Extractor):
    name = "upper-test"
    family = "test"
    modality = "text"
    default_layer = "codes"

    def _embed(self, inputs, layer):
        return [np.array([[ord(c) for c in s.upper()[:3].ljust(3)]], dtype=np.float64) for s in inputs]


def test_listing_imports_nothing_heavy():
    code = ("import sys, matteralign.models as m; m.names(); m.info(); "
            "heavy = [k for k in ('torch', 'chgnet', 'sevenn', 'torchani', 'pymatgen') if k in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean 'sevennet-0'"):
        models.load("sevenet-0")


def test_spec_validation():
    with pytest.raises(InputError, match="lowercase"):
        ModelSpec(name="Bad", factory=Upper, family="t", modality="text", layers=("a",), default_layer="a")
    with pytest.raises(InputError, match="modality"):
        ModelSpec(name="bad", factory=Upper, family="t", modality="audio", layers=("a",), default_layer="a")
    with pytest.raises(InputError, match="default layer"):
        ModelSpec(name="bad", factory=Upper, family="t", modality="text", layers=("a",), default_layer="b")


def test_custom_registration_and_protocol():
    spec = register(ModelSpec(name="upper-test", factory=Upper, family="test", modality="text", layers=("codes",),
                              default_layer="codes", description="test only"), replace=True)
    try:
        ex = models.load("upper-test", batch_size=2)
        out = ex.embed(["abc", "de"])
        assert [o.dtype for o in out] == [np.float32, np.float32]
        np.testing.assert_array_equal(out[1], [[68, 69, 32]])
        ids, arrays, skipped = ex.embed_samples([Sample("a", text="xy"), Sample("b", smiles="C")])
        assert ids == ["a"] and skipped == {"b": "no 'text' view"}
        row = next(r for r in models.info() if r["name"] == "upper-test")
        assert row["available"] and row["reason"] is None and row["layers"] == ["codes"]
        with pytest.raises(InputError, match="positive integer"):
            models.load("upper-test", batch_size=0)
        with pytest.raises(InputError, match="no inputs"):
            ex.embed([])
        prov = ex.provenance()
        assert prov["name"] == "upper-test" and prov["modality"] == "text" and prov["layers"] == ["codes"]
    finally:
        models.MODELS.pop(spec.name, None)


def test_missing_package_and_checkpoint_reasons():
    spec = ModelSpec(name="needs-missing", factory=Upper, family="t", modality="text", layers=("a",),
                     default_layer="a", requires=("a_package_that_is_not_there",))
    assert "not installed" in spec.unavailable_reason()
    register(spec, replace=True)
    try:
        with pytest.raises(MissingDependencyError, match="a_package_that_is_not_there"):
            models.load("needs-missing")
    finally:
        models.MODELS.pop("needs-missing", None)
    hub = ModelSpec(name="hub-x", factory=Upper, family="t", modality="text", layers=("a",), default_layer="a",
                    requires_checkpoint=True)
    assert "checkpoint" in hub.unavailable_reason()
    with pytest.raises(ModelError, match="not found"):
        Extractor._check_checkpoint("/nonexistent/weights.pt", "hub-x")


def test_fixed_options_cannot_be_overridden():
    with pytest.raises(InputError, match="fixes the options"):
        models.load("chgnet-0.3.0", version="0.2.0")


def test_pool():
    from matteralign.models import pool

    f = np.array([[1.0, 5.0], [3.0, -1.0]], dtype=np.float32)
    np.testing.assert_array_equal(pool(f), [2.0, 2.0])
    np.testing.assert_array_equal(pool(f, "sum"), [4.0, 4.0])
    np.testing.assert_array_equal(pool(f, "max"), [3.0, 5.0])
    with pytest.raises(UnknownNameError):
        pool(f, "median")
    with pytest.raises(InputError):
        pool(np.zeros((0, 2)))
