"""A synthetic study with structures, labels, energies and embeddings whose answers are known.

Two datasets, ``molecules`` (H, C, N, O) and ``crystals`` (O, Na, Si, Cl), n samples each. Each sample has a
latent ``z`` (4-D, standard normal) and a random composition. Labels:

* ``lin`` = z @ [1, -2, 0.5, 1.5] (linear in the latent, both datasets);
* ``wave`` = sin(2 z0) + z1² (nonlinear, molecules only);
* ``noise`` (independent Gaussian, both datasets);
* ``energy_ref_ev`` = counts @ mu_ref + 0.5 z0 (per structure, both datasets).

Models (``modality`` in brackets):

* ``lin-a``, ``lin-b`` [atoms]: independent noisy linear views of [z, dataset offset];
* ``tanh-c`` [atoms]: a nonlinear (tanh) view;
* ``chemlm`` [smiles]: molecules only;
* ``random`` [atoms, control]: Gaussian noise.

Energies (per structure): model f predicts counts @ mu_f + 0.5 z0 + sigma_f * e with its own per-element
offsets mu_f and error scale sigma_f (lin-a 0.01, lin-b 0.05, tanh-c 0.2, chemlm 0.5 on molecules only;
random predicts no energy).
CKNNA values in ``pairs`` are set by hand (lin-a is the most accurate model).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from matteralign.analysis import AnalysisContext, Embedding
from matteralign.samples import Dataset, Sample

ELEMENTS = {"molecules": [1, 6, 7, 8], "crystals": [8, 11, 14, 17]}
SIGMA = {"lin-a": 0.01, "lin-b": 0.05, "tanh-c": 0.2, "chemlm": 0.5}
CKNNA_TO_LIN_A = {"lin-b": 0.8, "tanh-c": 0.5, "chemlm": 0.3, "random": 0.01}


def make_matter(n: int = 150, seed: int = 0):
    from ase import Atoms

    rng = np.random.default_rng(seed)
    datasets, embeddings, energies, latents = {}, {}, {}, {}
    mu_ref = rng.normal(-5.0, 2.0, 120)
    mus = {m: rng.normal(-3.0, 2.0, 120) for m in SIGMA}
    Wa = rng.standard_normal((5, 24))
    Wb = rng.standard_normal((5, 16))
    Wc = rng.standard_normal((5, 20))
    for d, (ds, els) in enumerate(ELEMENTS.items()):
        Z = rng.standard_normal((n, 4))
        counts = rng.integers(1, 6, size=(n, len(els)))
        samples = []
        e_ref = counts @ mu_ref[els] + 0.5 * Z[:, 0]
        for i in range(n):
            numbers = np.repeat(els, counts[i])
            atoms = Atoms(numbers=numbers, positions=rng.uniform(0, 5, (len(numbers), 3)))
            labels = {
                "lin": float(Z[i] @ [1.0, -2.0, 0.5, 1.5]),
                "noise": float(rng.standard_normal()),
                "energy_ref_ev": float(e_ref[i]),
            }
            if ds == "molecules":
                labels["wave"] = float(np.sin(2 * Z[i, 0]) + Z[i, 1] ** 2)
            samples.append(Sample(id=f"{ds}:{i:04d}", atoms=atoms, smiles="C" if ds == "molecules" else None,
                                  labels=labels))  # fmt: skip
        dsobj = Dataset(ds, samples)
        ids = dsobj.ids
        datasets[ds] = dsobj
        latents[ds] = Z
        base = np.hstack([Z, np.full((n, 1), 3.0 * d)])
        embs = {
            "lin-a": base @ Wa + 0.1 * rng.standard_normal((n, 24)),
            "lin-b": base @ Wb + 0.1 * rng.standard_normal((n, 16)),
            "tanh-c": np.tanh(0.7 * base @ Wc) + 0.05 * rng.standard_normal((n, 20)),
            "random": rng.standard_normal((n, 12)),
        }
        if ds == "molecules":
            embs["chemlm"] = np.tanh(Z @ rng.standard_normal((4, 8))) + 0.3 * rng.standard_normal((n, 8))
        embeddings[ds] = {
            m: Embedding(ids=list(ids), X=X.astype(np.float32), layer="last") for m, X in embs.items()
        }
        energies[ds] = {
            m: (list(ids), counts @ mus[m][els] + 0.5 * Z[:, 0] + s * rng.standard_normal(n))
            for m, s in SIGMA.items()
            if m in embs
        }
    models = {
        "lin-a": {"family": "lin", "embedding_type": "invariant", "n_params": 5_000_000, "modality": "atoms"},
        "lin-b": {"family": "lin", "embedding_type": "equivariant", "n_params": 1_000_000, "modality": "atoms"},
        "tanh-c": {"family": "tanh", "embedding_type": "vanilla", "n_params": 200_000, "modality": "atoms"},
        "chemlm": {"family": "chemlm", "embedding_type": "text", "n_params": 30_000_000, "modality": "smiles"},
        "random": {"family": "random", "embedding_type": "random", "n_params": None, "modality": "atoms",
                   "control": True, "reads": []},
    }  # fmt: skip
    for meta in models.values():
        meta.setdefault("control", False)
    rows = []
    for ds in ELEMENTS:
        for m, v in CKNNA_TO_LIN_A.items():
            if m in embeddings[ds]:
                rows.append((ds, "lin-a", m, "cknna", json.dumps({"k": 25}), n, v))
        rows.append((ds, "lin-b", "tanh-c", "cknna", json.dumps({"k": 25}), n, 0.45))
    pairs = pd.DataFrame(rows, columns=["dataset", "model_a", "model_b", "metric", "params", "n", "value"])
    per_model = pd.DataFrame(columns=["dataset", "model", "metric", "params", "n", "value"])
    return datasets, embeddings, models, pairs, per_model, energies, latents


def make_context(
    tmp_path, *, n: int = 150, params=None, seed: int = 0, energies: bool = True
) -> AnalysisContext:
    datasets, embeddings, models, pairs, per_model, en, _ = make_matter(n=n, seed=seed)
    out = tmp_path / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    return AnalysisContext(
        out_dir=out,
        datasets=datasets,
        embeddings=embeddings,
        models=models,
        pairs=pairs,
        per_model=per_model,
        energies=en if energies else {},
        params=dict(params or {}),
        normalize="l2",
        seed=0,
    )
