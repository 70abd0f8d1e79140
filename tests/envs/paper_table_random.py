"""Seeded random instances of several models of one environment, built in one process of that environment.

Run as ``<env>/bin/python tests/envs/paper_table_random.py OUTDIR INPUT.json``. ``INPUT.json`` holds
``models`` (registered names, all of this environment), ``sequences`` (protein sequences, for ESM3) and
``backbones`` (``[N, CA, C]`` coordinates per residue, for ESM-IF1). Each model is built by the builder of its
family that the single-model tests use (``random_models.py``, ``fairchem_random.py``, ``eqv2_random.py``,
``pet_random.py``, ``protein_random.py``), into ``OUTDIR/<model>/``, saved as its own loader reads it. The
last stdout line is JSON: ``{model: checkpoint path}``.

Building every model of an environment in one process saves one interpreter start (torch and the family's
package imported again) per model; the builders' reference features are computed on one structure only.
"""

from __future__ import annotations

import json
import os
import sys


def build(model: str, outdir: str, inputs: dict) -> str:
    """Build a seeded random ``model`` into ``outdir`` and return its checkpoint path."""
    from matteralign import models

    spec = models.get_spec(model)
    base = model.partition("@")[0]  # a labelled name NAME@LABEL: the architecture of NAME
    os.makedirs(outdir, exist_ok=True)
    if base == "esm3-sequence":
        import protein_random

        return protein_random.esm3(outdir, {"sequences": inputs["sequences"]})["checkpoint"]
    if base == "esm-if1":
        import protein_random

        return protein_random.esm_if1(outdir, {"backbones": inputs["backbones"]})["checkpoint"]
    if spec.family == "pet":
        import pet_random

        return pet_random.main(outdir)["checkpoint"]
    from random_models import structures

    _ids, atoms = structures()
    one = atoms[:1]  # the builders' reference pass: one structure is enough here
    if spec.family == "orb":
        from random_models import orb as builder
    elif spec.family == "mace":
        from random_models import mace as builder
    elif spec.family == "fairchem":
        from fairchem_random import fairchem as builder
    elif spec.family == "equiformer_v2":
        from eqv2_random import eqv2 as builder
    else:
        raise SystemExit(f"no random builder for model {model!r} (family {spec.family!r}, env {spec.env!r})")
    path, _ref, _info = builder(base, outdir, _ids[:1], one)
    return path


def main(outdir: str, input_json: str) -> dict[str, str]:
    with open(input_json) as f:
        inputs = json.load(f)
    return {m: build(m, os.path.join(outdir, m.replace("@", "_")), inputs) for m in inputs["models"]}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
