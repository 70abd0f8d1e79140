"""Extraction throughput of the descriptor, cheminformatics, language-model and control adapters.

For each model and dataset: samples/s and atoms/s of ``Extractor.embed_samples`` (input checks, skipping,
batching, the computation, per-sample arrays), after a warm-up call that loads the model. One process,
one torch thread (the 2-core machine is shared; with two threads on a loaded machine the transformers
ran up to 20x slower). ``rxnfp-bert`` is also timed with batches in input order instead of batches of
similar length, in the same run, to measure what length bucketing buys.

Datasets: the bundled ``molecules`` and ``crystals`` when built, else stand-ins made here: the first NCI
SMILES of RDKit (largest fragment, ETKDGv3 seed 0, with SELFIES and the text dump) and the AFLOW prototypes
of pymatgen (rattled copies beyond the 288, ≤ 64 atoms). The JSON records which.

    python bench/extract_baselines.py                        # 1,000 molecules, 500 crystals
    python bench/extract_baselines.py --molecules 200 --crystals 100 --models soap morgan
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "extract_baselines.json"
MODELS = ["composition", "element-random", "random", "soap", "acsf", "morgan", "rdkit-2d",
          "rxnfp-bert", "minilm-smiles", "minilm-selfies", "minilm-text"]
TEXT_LIMIT = 200  # text dumps run to the 256-token limit: time minilm-text on a subset


def _standin(kind: str, n: int):
    import selfies as sf
    from ase import Atoms
    from rdkit import Chem, RDConfig, RDLogger
    from rdkit.Chem import AllChem

    from matteralign.datasets._format import atoms_text
    from matteralign.samples import Dataset, Sample

    RDLogger.DisableLog("rdApp.*")
    samples = []
    if kind == "molecules":
        with open(os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")) as fh:
            for line in fh:
                mol = Chem.MolFromSmiles(line.split()[0])
                if mol is None:
                    continue
                mol = max(Chem.GetMolFrags(mol, asMols=True), key=lambda m: m.GetNumAtoms())
                smi = Chem.MolToSmiles(mol)
                mh = Chem.AddHs(mol)
                params = AllChem.ETKDGv3()
                params.randomSeed = 0
                try:
                    if AllChem.EmbedMolecule(mh, params) != 0:
                        continue
                except RuntimeError:
                    continue
                atoms = Atoms(numbers=[a.GetAtomicNum() for a in mh.GetAtoms()],
                              positions=mh.GetConformer().GetPositions())
                try:
                    sel = sf.encoder(smi)
                except Exception:
                    sel = None
                samples.append(Sample(f"nci:{len(samples):05d}", atoms=atoms, smiles=smi, selfies=sel,
                                      text=atoms_text(atoms)))
                if len(samples) == n:
                    break
    else:
        from matteralign.datasets.build import aflow_prototypes

        protos = [p["atoms"] for p in aflow_prototypes() if len(p["atoms"]) <= 64]
        for i in range(n):
            a = protos[i % len(protos)].copy()
            if i >= len(protos):
                a.rattle(0.02, seed=i)
            samples.append(Sample(f"aflow:{i:05d}", atoms=a, text=atoms_text(a)))
    return Dataset(f"{kind}-standin", samples, {"standin": True})


def _dataset(kind: str, n: int):
    try:
        from matteralign import datasets

        ds = datasets.load(kind, n=n, seed=0)
        return ds, f"bundled {kind!r} (n={len(ds)}, seed=0)"
    except Exception as exc:  # not built yet: use the stand-in, and say so
        return _standin(kind, n), f"stand-in for {kind!r} ({type(exc).__name__})"


def _time(fn, data):
    t = time.perf_counter()
    ids, arrays, skipped = fn(data)
    dt = time.perf_counter() - t
    index = {s.id: s for s in data}
    n_atoms = sum(index[i].n_atoms for i in ids)
    return {"n_embedded": len(ids), "n_skipped": len(skipped), "seconds": dt, "n_atoms": n_atoms,
            "samples_per_s": len(ids) / dt if ids else None, "atoms_per_s": n_atoms / dt if ids else None,
            "dim": int(arrays[0].shape[1]) if arrays else None}


def main(molecules: int = 1000, crystals: int = 500, models: list[str] | None = None) -> dict:
    """Time every model on both datasets, print a table, write ``bench/results/extract_baselines.json``."""
    import torch

    from matteralign import models as registry
    from matteralign.models.base import Extractor

    torch.set_num_threads(1)
    data = {}
    for kind, n in (("molecules", molecules), ("crystals", crystals)):
        t = time.perf_counter()
        data[kind] = _dataset(kind, n)
        print(f"{kind}: {data[kind][1]}, {time.perf_counter() - t:.0f} s", flush=True)
    items = []
    for name in models or MODELS:
        t = time.perf_counter()
        ex = registry.load(name, num_threads=1)
        ex.embed_samples(data["molecules"][0].samples[:4])  # warm-up: load weights, first-call costs
        load_s = time.perf_counter() - t
        for kind, (ds, source) in data.items():
            samples = ds.samples[:TEXT_LIMIT] if name == "minilm-text" else ds.samples
            variants = [("length-bucketed" if ex.family == "lm" else "input-order", ex.embed_samples)]
            if name == "rxnfp-bert" and kind == "molecules":
                variants.append(("input-order", lambda d, ex=ex: Extractor.embed_samples(ex, d)))
            for batching, fn in variants:
                r = {"model": name, "dataset": kind, "source": source, "n_samples": len(samples),
                     "batching": batching, "load_s": load_s, **_time(fn, samples)}
                if r["n_embedded"] == 0:
                    r["samples_per_s"] = r["atoms_per_s"] = None
                items.append(r)
                rate = (f"{r['samples_per_s']:9.1f} samples/s {r['atoms_per_s']:10.1f} atoms/s"
                        if r["n_embedded"] else "   (no supported sample)")
                print(f"{name:15s} {kind:10s} {batching:16s} n={r['n_embedded']:5d} skipped={r['n_skipped']:4d} "
                      f"{rate} d={r['dim']}", flush=True)
        del ex
    by = {(r["model"], r["batching"]): r for r in items if r["dataset"] == "molecules"}
    ratio = None
    if ("rxnfp-bert", "length-bucketed") in by and ("rxnfp-bert", "input-order") in by:
        ratio = by[("rxnfp-bert", "input-order")]["seconds"] / by[("rxnfp-bert", "length-bucketed")]["seconds"]
        print(f"rxnfp-bert: input-order / length-bucketed time = {ratio:.2f}")
    result = {"benchmark": "extract_baselines", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "load_average": os.getloadavg(), "cpus": os.cpu_count(), "torch_threads": 1,
              "text_limit": TEXT_LIMIT, "items": items, "bucketing_speedup_rxnfp": ratio,
              "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--molecules", type=int, default=1000)
    ap.add_argument("--crystals", type=int, default=500)
    ap.add_argument("--models", nargs="*")
    args = ap.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    main(args.molecules, args.crystals, args.models)
