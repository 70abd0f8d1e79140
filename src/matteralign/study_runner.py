"""The stages of a study run: extract → energies → measure → analyse → report.

:func:`run_study` reads top to bottom: each stage is **planned** as units of work
(:mod:`matteralign.execute.units`), the units **run** on one executor (local worker processes by
default, a Ray cluster with ``--executor ray``), and the driver **commits** each result as it lands
(:mod:`matteralign.execute.commit`: embeddings to the store, energies and metric tables to the
results folder). Kept apart from :mod:`matteralign.study` (configuration) so that reading a study
file imports nothing heavy. Every stage skips work whose result is already on disk and keeps its
progress per unit, so an interrupted run resumes where it stopped and ends with the same numbers as
an uninterrupted one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lock import LOCK_NAME
from .errors import ConfigError, MatterAlignError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .study import Study, StudyResults

#: Fraction of a dataset's samples a model must embed to join the dataset's common sample set.
#: Models below it (e.g. ANI-1x on molecules with elements beyond H, C, N, O) are compared with
#: each other model on the intersection of their own ids, and the row's ``n`` says so.
CORE_COVERAGE = 0.9
PAIR_COLUMNS = [
    "dataset", "model_a", "model_b", "layer_a", "layer_b", "metric", "params", "n", "value",
    "p_value", "ci_low", "ci_high", "normalize", "note", "seed", "study",
]
MODEL_COLUMNS = ["dataset", "model", "layer", "metric", "params", "n", "value", "normalize", "note", "seed", "study"]


def _hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class _Stage:
    """Rich progress + timing for one stage (quiet when progress is off)."""

    def __init__(self, name: str, timings: dict[str, float], progress: bool):
        self.name, self.timings, self.progress = name, timings, progress

    def __enter__(self):
        self.t0 = time.perf_counter()
        if self.progress:
            from rich.console import Console

            Console(stderr=True).rule(f"[bold]{self.name}")
        return self

    def __exit__(self, *exc):
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.t0
        return False


def _guard_out_dir(study: Study, out: Path) -> None:
    """Refuse an output folder that holds a different study's results (nothing is overwritten); the same
    study with other dataset sizes ``n`` is not a different study (its results are replaced)."""
    marker = out / "study.toml"
    if marker.exists():
        first = marker.read_text().splitlines()[:1]
        digest = first[0].removeprefix("# digest: ").strip() if first else ""
        if digest != study.config.digest() and not _same_but_n(study, marker):
            raise ConfigError(
                f"output folder {str(out)!r} holds results of a different study (digest {digest or '?'} vs "
                f"{study.config.digest()}); choose another --out or delete that folder"
            )
    elif out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise ConfigError(f"output folder {str(out)!r} is not empty and holds no matteralign study; choose another --out")


def _same_but_n(study: Study, marker: Path) -> bool:
    """Whether the study recorded in ``marker`` is this one with other dataset sizes ``n`` only: raising (or
    lowering) ``n`` in place reruns the study in its folder, reusing the embeddings the store holds."""
    from .study import Study

    def shape(cfg) -> dict[str, Any]:
        payload = cfg.model_dump(exclude={"out", "store", "name", "execution", "allow_partial"})
        payload["datasets"] = [{k: v for k, v in d.items() if k != "n"} for d in payload["datasets"]]
        return payload

    try:
        return shape(Study.from_toml(marker).config) == shape(study.config)
    except MatterAlignError:
        return False


def _load_datasets(study: Study) -> dict[str, Any]:
    from . import datasets as ds_registry

    cfg = study.config
    out = {}
    for entry in cfg.datasets:
        seed = cfg.seed if entry.seed is None else entry.seed
        full = ds_registry.load(entry.name)
        if entry.n is not None and entry.n > len(full):
            raise ConfigError(f"datasets.{entry.name}.n = {entry.n} is larger than the dataset ({len(full)} samples)")
        if full.name in out:  # the store, tables and report know a dataset by this name (datasets.dataset_name)
            raise ConfigError(f"datasets: {entry.name!r} and another entry are both named {full.name!r} in the "
                              "store; rename a file or load it under another name")
        out[full.name] = full.subsample(entry.n, seed=seed)
    return out


def _model_meta(name: str, layer: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """Metadata the analyses group by: family, kind, embedding type, parameter count, control flag.

    Every fact comes from the model's :class:`~matteralign.models.ModelSpec`.
    """
    from . import models as model_registry

    spec = model_registry.get_spec(name)
    return {
        "family": "control" if spec.control else spec.family,
        "modality": spec.modality,
        "embedding_type": spec.embedding_type_of(layer),
        "kind": "control" if spec.control else (spec.kind or "mlip"),
        "n_params": provenance.get("provenance", provenance).get("n_parameters"),
        "control": spec.control,
        "random_init_of": spec.random_init_of,
        "reads": list(spec.reads()),
        "layer": layer,
    }


def _reads(spec, ds) -> bool:
    """Whether the model of ``spec`` reads some sample of ``ds``: a model skips a dataset that lacks its
    view (a weather model on crystals, an interatomic potential on weather patches, a protein structure model
    on molecules: :meth:`ModelSpec.reads_sample`)."""
    return any(spec.reads_sample(s) for s in ds)


def _not_read(cfg, datasets: dict) -> dict[str, str]:
    """``"dataset/model"`` -> why the study did not run the model on that dataset (it reads none of its samples)."""
    from . import models as model_registry
    from .samples import VIEWS

    out = {}
    for m in cfg.models:
        spec = model_registry.get_spec(m)
        for ds_name, ds in datasets.items():
            if not _reads(spec, ds):
                has = [v for v in VIEWS if any(s.has(v) for s in ds)]
                needs = f" with {' and '.join(spec.needs_views)}" if spec.needs_views else ""
                out[f"{ds_name}/{m}"] = (f"reads {' or '.join(spec.reads()) or 'any'}{needs}; the samples carry "
                                         f"{', '.join(has) or 'none of those'}")
    return out


def _study_layers(cfg, spec) -> tuple[str, ...]:
    """The layers a study extracts for a model (its default layer unless ``[layers]`` says otherwise)."""
    value = cfg.layers.get(spec.name)
    if value is None:
        return (spec.default_layer,)
    if value == "all" or isinstance(value, (list, tuple)):
        from .models import expand_layers

        lays = tuple(expand_layers(spec, value))
    else:
        lays = (value,)
    for lay in lays:
        if lay not in spec.layers:
            raise ConfigError(f"layers.{spec.name} = {lay!r} is not a layer of that model; layers: {list(spec.layers)}")
    return lays


def _measured_layer(spec, lays: tuple[str, ...]) -> str:
    """The layer the pair metrics use when a study extracts several: the default layer, else the first."""
    return spec.default_layer if spec.default_layer in lays else lays[0]


def _options(cfg, model: str) -> dict[str, Any]:
    options: dict[str, Any] = {"seed": cfg.seed}
    if cfg.lead_time_hours is not None:
        from .models import get_spec

        if get_spec(model).kind == "weather":
            options["lead_time_hours"] = float(cfg.lead_time_hours)
    if model in cfg.checkpoints:
        options["checkpoint"] = cfg.checkpoints[model]
        if cfg.trust_checkpoint:
            options["trust_checkpoint"] = True
    return options


# ---------------------------------------------------------------------- stage: extract
def _extract(study: Study, store, datasets: dict, executor, committer, subsets: dict, progress: bool):
    """Plan every (dataset, model) extraction the store lacks, run the units, commit each shard.

    Returns ``{(dataset, model): layers extracted}`` for every model that reads the dataset.
    """
    from . import models as model_registry
    from .execute import placement, plan_extraction, resources_for

    cfg = study.config
    layers: dict[tuple[str, str], tuple[str, ...]] = {}
    units, total = [], 0
    for model_name in cfg.models:
        spec = model_registry.get_spec(model_name)
        lays = _study_layers(cfg, spec)
        env = placement.env_of(model_name)
        for ds_name, ds in datasets.items():
            if not _reads(spec, ds):
                continue
            layers[(ds_name, model_name)] = lays
            with_energy = spec.energy_in_forward and "energy" in spec.properties and bool(subsets.get(ds_name))
            job, todo = plan_extraction(
                store, ds, model_name, layers=lays, options=_options(cfg, model_name), shard_size=cfg.shard_size,
                batch_size=cfg.batch_size, save_atoms=cfg.save_atoms, env=env,
                resources=resources_for(spec, use_gpu=cfg.execution.gpus), with_energy=with_energy)
            committer.jobs[(ds_name, model_name)] = job
            if not todo:
                if not job.summaries and all(store.has(ds_name, model_name, lay) for lay in lays):
                    continue
                committer.finish(job)  # every shard committed by an interrupted run: consolidate
            units.extend(todo)
            total += sum(len(u.samples) for u in todo)
    if units:
        from .execute.progress import unit_progress

        with unit_progress(progress, total, f"extract · {len(units)} shards") as advance:
            executor.run(units, committer, progress=lambda u: advance(len(u.samples)))
    return layers


# ---------------------------------------------------------------------- stage: energies
def _energy_subset(study: Study, ds):
    """The samples whose energies are predicted: up to ``energy_samples`` with a reference energy label.

    The accuracy-vs-alignment analysis needs the reference; the study computes it on a subset, as the
    paper does (1,000 structures), so energy prediction does not double the cost of extraction. The subset
    is the first ``energy_samples`` usable samples in the dataset's seeded order (:meth:`Dataset.seeded_order`),
    in dataset order: nested like the dataset's subsample, so raising ``n`` keeps it (and its stored energies).
    """
    from .analysis.convergence import reference_label

    label = reference_label(ds)
    if label is None:
        return []
    usable = [s.atoms is not None and np.isfinite(s.labels.get(label, np.nan)) for s in ds]
    n = study.config.energy_samples
    keep = [i for i in ds.seeded_order() if usable[i]][:n]
    return [ds.samples[i] for i in sorted(keep)]


def _energies(study: Study, datasets: dict, subsets: dict, layers: dict, executor, committer, progress: bool):
    """Predicted energies (eV per structure) of every model that predicts them, in its environment or not.

    Taken from the extraction's own forward pass where the model gives both (``energy_in_forward``),
    otherwise computed by energy units; kept per (dataset, model, subset) in ``results/energies``.
    """
    from . import models as model_registry
    from .execute import EnergyUnit, placement, resources_for
    from .samples import Dataset

    cfg = study.config
    units = []
    for model_name in cfg.models:
        spec = model_registry.get_spec(model_name)
        if "energy" not in spec.properties:
            continue
        for ds_name, subset in subsets.items():
            if not subset or (ds_name, model_name) not in layers:
                continue
            key = Dataset(ds_name, subset).fingerprint()
            committer.energy_keys[(ds_name, model_name)] = key
            path = committer.energy_path(ds_name, model_name, key)
            if path.exists():
                z = np.load(path, allow_pickle=False)
                committer.energies.setdefault(ds_name, {})[model_name] = ([str(i) for i in z["ids"]], z["energy"])
                continue
            job = committer.jobs.get((ds_name, model_name))
            got = committer.shard_energies(ds_name, model_name, job.n_shards) if job and job.with_energy else None
            if got is not None:
                ids, energy = got
                pos = {i: k for k, i in enumerate(ids)}
                keep = [s.id for s in subset if s.id in pos]
                committer(EnergyUnit(ds_name, model_name, []), {"ids": keep, "energy": energy[[pos[i] for i in keep]]})
                continue
            units.append(EnergyUnit(ds_name, model_name, list(subset), options=_options(cfg, model_name),
                                    env=placement.env_of(model_name),
                                    resources=resources_for(spec, use_gpu=cfg.execution.gpus)))
    if units:
        from .execute.progress import unit_progress

        with unit_progress(progress, len(units), f"energies · {len(units)} subsets") as advance:
            executor.run(units, committer, progress=lambda u: advance(1))
    return committer.energies


# ---------------------------------------------------------------------- stage: measure
def _measure(study: Study, embeddings: dict, layers: dict, executor, results_dir: Path, progress: bool):
    """Pair and single-model metrics of every dataset, as units; each unit's table is kept as it lands,
    so an interrupted stage resumes per unit. Returns ``{dataset: (pairs, per_model)}``."""
    import pandas as pd

    from .execute import CallUnit, Ref

    cfg = study.config
    metric_list = [(name, dict(params)) for name, params in cfg.metrics.items()]
    k_max = max((int(p["k"]) for _, p in metric_list if "k" in p), default=0) or None
    calib = {**cfg.calibration.model_dump(), "seed": cfg.seed}
    mod = "matteralign.execute.measure"
    threads = cfg.execution.measure_threads
    units, parts_of, done = [], {}, {}
    for ds_name, embs in embeddings.items():
        # keyed on the stored contents too: recomputed (e.g. repaired) embeddings never reuse old numbers
        key = _hash(cfg.digest(), ds_name, {m: (e.layer, e.ids, e.provenance.get("content_digest"))
                                            for m, e in embs.items()})
        part_dir = results_dir / "cache" / f"{ds_name}-{key}"
        final = (part_dir.with_suffix(".pairs.parquet"), part_dir.with_suffix(".models.parquet"))
        if final[0].exists() and final[1].exists():
            done[ds_name] = (pd.read_parquet(final[0]), pd.read_parquet(final[1]))
            continue
        parts_of[ds_name] = (part_dir, final, [])
        n_total = max(len(e.ids) for e in embs.values())
        core = [m for m, e in embs.items() if len(e.ids) >= CORE_COVERAGE * n_total]
        partial = [m for m in embs if m not in core]
        common = set.intersection(*(set(embs[m].ids) for m in core)) if core else set()
        common_ids = [i for i in embs[core[0]].ids if i in common] if core else []
        ds_units = []
        if len(core) >= 2:
            tl = measure_tiles(core, cfg.execution.pair_block)
            for i, rows in enumerate(tl):
                for cols in tl[i:]:
                    names = list(dict.fromkeys([*rows, *cols]))
                    ds_units.append(CallUnit(
                        key=("pairs", ds_name, names[0], names[-1], len(rows), len(cols)), fn=f"{mod}:measure_block",
                        args=(rows, cols, metric_list, calib, *[Ref(("cache", ds_name, m)) for m in names]),
                        label=f"{ds_name} · pairs {rows[0]}..{cols[-1]}", threads=threads))
            needed = {m for u in ds_units if not _part(part_dir, u).exists()
                      for m in [a.key[2] for a in u.args if isinstance(a, Ref)]}
            for m in core:
                if m in needed:
                    units.append(CallUnit(key=("cache", ds_name, m), fn=f"{mod}:prepare_cache", share=True,
                                          args=(embs[m].aligned(common_ids), cfg.normalize, k_max, m),
                                          label=f"{ds_name} · {m} cache", threads=threads))
        self_done: set[str] = set()
        for a in partial:  # partial-coverage models: each pair on the intersection of its own two id sets
            for b in embs:
                if b == a or (b in partial and partial.index(b) < partial.index(a)):
                    continue
                ids = [i for i in embs[a].ids if i in set(embs[b].ids)]
                if len(ids) < 10:
                    continue
                ds_units.append(CallUnit(
                    key=("pair-group", ds_name, a, b), fn=f"{mod}:measure_pair_group",
                    args=(a, b, embs[a].aligned(ids), embs[b].aligned(ids), cfg.normalize, k_max, metric_list,
                          a not in self_done, calib), label=f"{ds_name} · {a} × {b}", threads=threads))
                self_done.add(a)
        for m, e in embs.items():
            if cfg.model_metrics:
                ds_units.append(CallUnit(key=("model", ds_name, m), fn=f"{mod}:measure_models",
                                         args=(m, e.X, cfg.normalize, dict(cfg.model_metrics), calib),
                                         label=f"{ds_name} · {m} measures", threads=threads))
        for u in ds_units:
            parts_of[ds_name][2].append(u)
            if not _part(part_dir, u).exists():
                units.append(u)

    def commit(unit, result):
        if unit.key[0] == "cache":
            return
        ds_name = unit.key[1]
        _write_parquet(result, _part(parts_of[ds_name][0], unit))

    if units:
        from .execute.progress import unit_progress

        with unit_progress(progress, len(units), f"measure · {len(units)} units") as advance:
            executor.run(units, commit, progress=lambda u: advance(1))
    out = dict(done)
    for ds_name, (part_dir, final, ds_units) in parts_of.items():
        pair_parts = [pd.read_parquet(_part(part_dir, u)) for u in ds_units if u.key[0] != "model"]
        model_parts = [pd.read_parquet(_part(part_dir, u)) for u in ds_units if u.key[0] == "model"]
        pairs, per_model = _assemble(study, ds_name, pair_parts, model_parts, embeddings[ds_name], layers)
        _write_parquet(pairs, final[0])
        _write_parquet(per_model, final[1])
        out[ds_name] = (pairs, per_model)
    return out


def _read_embeddings(study: Study, store, datasets: dict, extracted: dict) -> dict[str, dict[str, Any]]:
    """The pooled embeddings the measure stage uses: per dataset and model, its measured layer."""
    from . import models as model_registry
    from .analysis import Embedding

    embeddings: dict[str, dict[str, Embedding]] = {}
    for ds_name in datasets:
        embeddings[ds_name] = {}
        wanted = set(datasets[ds_name].ids)
        for m in study.config.models:
            if (ds_name, m) not in extracted:  # the model does not read this dataset's samples
                continue
            layer = _measured_layer(model_registry.get_spec(m), extracted[(ds_name, m)])
            ids, X = store.read(ds_name, m, layer)
            keep = [i for i, s in enumerate(ids) if s in wanted]
            if not keep:
                continue
            emb = Embedding(ids=[ids[i] for i in keep], X=np.asarray(X)[keep], layer=layer,
                            provenance={**store.provenance(ds_name, m, layer),
                                        "content_digest": store.content_digest(ds_name, m, layer)})
            for lay in extracted[(ds_name, m)] if len(extracted[(ds_name, m)]) > 1 else ():
                if lay == layer:
                    emb.layers[lay] = Embedding(ids=emb.ids, X=emb.X, layer=lay)
                    continue
                lids, LX = store.read(ds_name, m, lay)  # every layer of the model, for the layers analysis
                lkeep = [i for i, s in enumerate(lids) if s in wanted]
                emb.layers[lay] = Embedding(ids=[lids[i] for i in lkeep], X=np.asarray(LX)[lkeep], layer=lay,
                                            provenance={"content_digest": store.content_digest(ds_name, m, lay)})
            embeddings[ds_name][m] = emb
    return embeddings


def measure_tiles(names: list[str], size: int | None) -> list[list[str]]:
    from .execute.measure import tiles

    return tiles(names, size)


def _part(part_dir: Path, unit) -> Path:
    return part_dir / (_hash(*unit.key) + ".parquet")


def _assemble(study: Study, ds_name: str, pair_parts: list, model_parts: list, embs: dict, layers: dict):
    """The dataset's tidy tables from its units' parts, in a canonical row order."""
    import pandas as pd

    cfg = study.config
    digest = cfg.digest()
    order_m = {m: i for i, m in enumerate(cfg.models)}
    order_k = {name: i for i, name in enumerate(cfg.metrics)}
    pairs = pd.concat(pair_parts, ignore_index=True) if pair_parts else pd.DataFrame(columns=PAIR_COLUMNS)
    if len(pairs):
        pairs = pairs.drop_duplicates(subset=["model_a", "model_b", "metric", "params"])
        pairs = pairs.assign(_k=pairs["metric"].map(order_k), _a=pairs["model_a"].map(order_m),
                             _b=pairs["model_b"].map(order_m))
        pairs = pairs.sort_values(["_k", "params", "_a", "_b"], kind="mergesort").drop(columns=["_k", "_a", "_b"])
        pairs = pairs.reset_index(drop=True)
    pairs["dataset"] = ds_name
    pairs["layer_a"] = [embs[m].layer for m in pairs["model_a"]]
    pairs["layer_b"] = [embs[m].layer for m in pairs["model_b"]]
    for col in ("p_value", "ci_low", "ci_high"):
        if col not in pairs:
            pairs[col] = np.nan
    if len(pairs) and "p_value" in pairs:
        from .metrics.calibration import adjust_table

        pairs = adjust_table(pairs)
    pairs["normalize"] = cfg.normalize
    pairs["seed"] = cfg.seed
    pairs["study"] = digest
    pairs = pairs[[c for c in PAIR_COLUMNS if c in pairs] + [c for c in pairs if c not in PAIR_COLUMNS]]

    per_model = pd.concat(model_parts, ignore_index=True) if model_parts else pd.DataFrame(
        columns=["model", "metric", "params", "n", "value", "note"])
    per_model["dataset"] = ds_name
    per_model["layer"] = [embs[m].layer for m in per_model["model"]]
    per_model["normalize"] = cfg.normalize
    per_model["seed"] = cfg.seed
    per_model["study"] = digest
    per_model = per_model[MODEL_COLUMNS + [c for c in ("ci_low", "ci_high", "ci_method") if c in per_model]]
    per_model = per_model.reset_index(drop=True)
    return pairs, per_model


def run_study(study: Study, *, progress: bool = True, report: bool = True, executor=None) -> StudyResults:
    """Run ``study`` holding its output folder (one study per folder at a time; see :func:`_run_study`).

    Raises
    ------
    LockedError
        Another process runs a study in the same output folder (it is named).
    """
    from ._lock import FolderLock

    study.validate()  # a bad study fails before its folder is created or locked
    out = Path(study.config.out)
    created = not out.exists()
    try:
        with FolderLock(out, purpose=f"study ({study.source})"):
            from ._warnings import collect

            try:
                with collect() as warned:  # shown once, after the progress display (and in the report)
                    return _run_study(study, progress=progress, report=report, executor=executor)
            finally:
                _tell_warnings(warned, out, progress)
    except BaseException:
        if created and out.is_dir() and [p.name for p in out.iterdir()] == [LOCK_NAME]:
            (out / LOCK_NAME).unlink(missing_ok=True)  # failed before any work: leave no folder behind
            out.rmdir()
        raise


def _tell_warnings(log, out: Path, progress: bool) -> None:
    """Print the run's warnings once, as counts by kind, and keep them in ``results/warnings.json``."""
    rows = log.summary()
    if (out / "results").is_dir():
        (out / "results" / "warnings.json").write_text(json.dumps(rows, indent=1))
    if progress and rows:
        from rich.console import Console

        console = Console(stderr=True)
        lines = log.lines()
        console.print(f"[yellow]{lines[0]}[/]", highlight=False)
        for line in lines[1:]:
            console.print(line, highlight=False, markup=False)


def _run_study(study: Study, *, progress: bool = True, report: bool = True, executor=None) -> StudyResults:
    """Run every stage of ``study`` (see :meth:`matteralign.study.Study.run`).

    The whole of a study's orchestration reads top to bottom here: **plan** each stage as units of
    work, **run** the units on one executor (``[execution]``: local worker processes by default, a Ray
    cluster, or inline), **commit** each result in the driver (embeddings to the store, energies and
    metric tables to the results folder), then analyse and report.
    """
    import pandas as pd

    from .execute import Executor, get_executor
    from .execute.commit import Committer
    from .store import Store, wait_for_discards
    from .study import StudyResults

    cfg = study.config
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    out = Path(cfg.out)

    # -- everything is checked before any work starts; nothing is overwritten
    study.validate()
    _guard_out_dir(study, out)
    store_root = Path(cfg.store) if cfg.store else out / "store"
    if store_root.exists():  # a foreign or incompatible store fails here, before any work
        Store(store_root, mode="r")
    with _Stage("datasets", timings, progress):
        datasets = _load_datasets(study)
    study.check_sizes({name: len(ds) for name, ds in datasets.items()})
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.toml").write_text(f"# digest: {cfg.digest()}\n# source: {study.source}\n" + study.to_toml())
    store = Store(store_root)
    results_dir = out / "results"
    subsets = {name: _energy_subset(study, ds) for name, ds in datasets.items()}

    ex_cfg = cfg.execution
    own = not isinstance(executor, Executor)
    ex = executor if not own else get_executor(executor or ex_cfg.executor, workers=ex_cfg.workers,
                                               threads=ex_cfg.threads, address=ex_cfg.address)
    try:
        committer = Committer(store, energies_dir=results_dir / "energies")
        # -- plan → run → commit, stage by stage, on one executor
        with _Stage("extract", timings, progress):
            extracted = _extract(study, store, datasets, ex, committer, subsets, progress)
            wait_for_discards()  # no deletion of finished shards runs inside the store past its stage
        with _Stage("energies", timings, progress):
            energies = _energies(study, datasets, subsets, extracted, ex, committer, progress)
        embeddings = _read_embeddings(study, store, datasets, extracted)
        with _Stage("measure", timings, progress):
            measured = _measure(study, embeddings, extracted, ex, results_dir, progress)
        from .study import _atomic_write_table

        pair_frames = [measured[d][0] for d in embeddings if d in measured]
        model_frames = [measured[d][1] for d in embeddings if d in measured]
        pairs = pd.concat(pair_frames, ignore_index=True) if pair_frames else pd.DataFrame(columns=PAIR_COLUMNS)
        per_model = pd.concat(model_frames, ignore_index=True) if model_frames else pd.DataFrame(columns=MODEL_COLUMNS)
        _atomic_write_table(pairs, results_dir / "pairs")
        _atomic_write_table(per_model, results_dir / "per_model")

        results = StudyResults(pairs=pairs, per_model=per_model, out=out, timings=timings,
                               missing=missing_numbers(study, embeddings, extracted, pairs, per_model))
        if not report:
            _tell_missing(results, progress)
            return results
        with _Stage("analyse", timings, progress):
            analysis_results, failures = _analyse(study, datasets, embeddings, pairs, per_model, energies, timings,
                                                  ex, progress)
        execution = ex.describe()
    finally:
        if own:
            ex.close()
    with _Stage("report", timings, progress):
        timings["total"] = time.perf_counter() - t_start
        results.report = _report(study, datasets, embeddings, analysis_results, failures, timings, execution)
    results.failed_analyses = dict(failures)
    _tell_missing(results, progress)
    return results


def missing_numbers(study: Study, embeddings: dict, extracted: dict, pairs, per_model) -> list[dict[str, Any]]:
    """Every requested number the study could not compute, with the reason.

    A model extracted for a dataset but with no embedded sample left, a model that no pair of a pair
    metric includes (too few shared samples), and every NaN value of the tables (its ``note`` says why).

    Returns
    -------
    list of dict
        ``dataset``, ``metric`` (or ``None``), ``params``, ``what`` (the pair "a × b" or the model), ``reason``.
    """
    out: list[dict[str, Any]] = []
    for ds_name, m in sorted(extracted):
        if m not in embeddings.get(ds_name, {}):
            out.append({"dataset": ds_name, "metric": None, "params": "", "what": m,
                        "reason": "no embedded sample of this dataset (every sample skipped or not in the store)"})
    for ds_name, embs in embeddings.items():
        if len(embs) < 2:
            continue
        for metric, params in study.config.metrics.items():
            rows = pairs[(pairs["dataset"] == ds_name) & (pairs["metric"] == metric)] if len(pairs) else pairs
            seen = set(rows["model_a"]) | set(rows["model_b"]) if len(rows) else set()
            for m in embs:
                if m not in seen:
                    out.append({"dataset": ds_name, "metric": metric, "params": json.dumps(params, sort_keys=True),
                                "what": m, "reason": "in no measured pair (fewer than 10 samples shared with "
                                "every other model)"})
    for df, who in ((pairs, lambda r: f"{r['model_a']} × {r['model_b']}"), (per_model, lambda r: str(r["model"]))):
        if not len(df):
            continue
        for _, r in df[df["value"].isna()].iterrows():
            note = r.get("note") if isinstance(r.get("note"), str) and r.get("note") else "no value (no reason given)"
            out.append({"dataset": r["dataset"], "metric": r["metric"], "params": r["params"], "what": who(r),
                        "reason": note})
    return out


def _tell_missing(results: StudyResults, progress: bool) -> None:
    """Print what could not be computed (to stderr), grouped by dataset, metric and reason."""
    text = results.summary()
    if text and progress:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(f"[yellow]incomplete:[/] {escape(text)}", highlight=False, soft_wrap=True)


def _analyse(study: Study, datasets: dict, embeddings: dict, pairs, per_model, energies: dict,
             timings: dict[str, float], executor, progress: bool = False) -> tuple[list, dict[str, str]]:
    """Run every analysis of the study as units on ``executor`` (an unchanged one is read back from its
    cache): those that read no other analysis' result side by side, then those that do (the findings).
    The figures come back with each unit's result and are written here (:mod:`matteralign.execute.analyse`)."""
    from .analysis.base import ANALYSIS_COST, READS_RESULTS
    from .execute import CallUnit
    from .execute.analyse import place_files
    from .study import _atomic_write_table

    cfg = study.config
    out = Path(cfg.out)
    report_dir, results_dir = out / "report", out / "results"
    plan = _analysis_plan(cfg)
    done: dict[str, Any] = {}  # name -> AnalysisResult (None: nothing to show)
    failures: dict[str, str] = {}
    models_meta = {}
    for embs in embeddings.values():
        for m, e in embs.items():
            models_meta.setdefault(m, _model_meta(m, e.layer, e.provenance))
    # an analysis whose inputs (study, metric tables, energies, its parameters) are unchanged is not run again
    contents = {d: {m: [e.provenance.get("content_digest"), e.ids,
                        {lay: le.provenance.get("content_digest") for lay, le in e.layers.items()}]
                    for m, e in embs.items()} for d, embs in embeddings.items()}
    inputs_key = _hash(cfg.digest(), _frame_digest(pairs), _frame_digest(per_model),
                       {d: {m: list(e[0]) for m, e in v.items()} for d, v in energies.items()}, models_meta,
                       matteralign_version(), contents)
    fields = {"datasets": datasets, "embeddings": embeddings, "models": models_meta, "pairs": pairs,
              "per_model": per_model, "energies": energies, "normalize": cfg.normalize, "seed": cfg.seed}

    def so_far() -> list:
        return [done[n] for n in plan if done.get(n) is not None]

    first = sorted((n for n in plan if n not in READS_RESULTS), key=lambda n: -ANALYSIS_COST.get(n, 1.0))
    for wave in (first, [n for n in plan if n in READS_RESULTS]):
        units, cache_of = [], {}
        for name in wave:
            params = plan[name]
            deps = [r.name for r in so_far()] if name in READS_RESULTS else []
            cached = cache_of[name] = results_dir / "analysis" / f"{name}-{_hash(inputs_key, name, params, deps)}.pkl"
            if cached.exists():
                res = _load_result(cached)
                if res is not None:
                    done[name] = res
                    continue
            ctx_fields = {**fields, "params": params,
                          "results": {r.name: r for r in so_far()} if name in READS_RESULTS else {}}
            units.append(CallUnit(key=("analysis", name), fn="matteralign.execute.analyse:run_analysis",
                                  args=(name, ctx_fields), threads=1, label=f"analysis · {name}"))

        def land(unit, reply, cache_of=cache_of):
            name = unit.key[1]
            if reply["error"] is not None:
                failures[name] = reply["error"][1]
                return
            res = place_files(reply, report_dir / "figures" / name)
            timings[f"analysis:{name}"] = reply["seconds"]
            done[name] = res
            if res is None:  # nothing to show for this study (e.g. the layers analysis with one layer per model)
                return
            for tname, table in res.tables.items():
                _atomic_write_table(table, results_dir / "analysis" / name / tname)
            _save_result(res, cache_of[name])

        if units:
            from .execute.progress import unit_progress

            with unit_progress(progress, len(units), f"analyse · {len(units)} analyses") as advance:
                executor.run(units, land, progress=lambda _u: advance(1))
    return so_far(), failures


def _report(study: Study, datasets: dict, embeddings: dict, analysis_results: list, failures: dict,
            timings: dict[str, float], execution: dict[str, Any]) -> Path:
    """Write the static HTML report with the provenance of every number; return its path."""
    from .report import write_report

    cfg = study.config
    out = Path(cfg.out)
    provenance = {
        "environment": study.environment(),
        "study_digest": cfg.digest(),
        "study_source": study.source,
        "execution": _jsonable(execution),
        "datasets": {k: {"n": len(v), "fingerprint": v.fingerprint(), **_jsonable(v.meta)} for k, v in datasets.items()},
        "models": {
            f"{ds}/{m}": _jsonable(e.provenance) for ds, embs in embeddings.items() for m, e in embs.items()
        },
        "not_read": _not_read(cfg, datasets),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "analysis_failures": failures,
    }
    return write_report(analysis_results, out_dir=out / "report", study=cfg.model_dump(), provenance=provenance,
                        tables_dir=out / "results")


def matteralign_version() -> str:
    """The package version and a digest of the code the analyses run (``analysis/``, ``metrics/``,
    ``report/``), so a kept analysis result is not reused after that code changed under one version."""
    from . import __version__

    return f"{__version__}+{_analysis_code_digest()}"


@functools.lru_cache(maxsize=1)
def _analysis_code_digest() -> str:
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for sub in ("analysis", "metrics", "report"):
        for path in sorted((root / sub).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _frame_digest(df) -> str:
    import pandas as pd

    return hashlib.sha256(pd.util.hash_pandas_object(df.astype(str), index=False).values.tobytes()).hexdigest()[:16]


def _save_result(res, path: Path) -> None:
    """Keep an analysis result (tables, findings, figure paths) to skip the analysis on an unchanged rerun."""
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        pickle.dump(res, fh)
    os.replace(tmp, path)


def _load_result(path: Path):
    """A kept analysis result, or None when it is unreadable or one of its files is gone."""
    import pickle

    try:
        with open(path, "rb") as fh:
            res = pickle.load(fh)
    except Exception:  # written by another version: run the analysis again
        return None
    if not all(Path(f).exists() for f in [*res.figures, *res.files]):
        return None
    return res


def _analysis_plan(cfg) -> dict[str, dict[str, Any]]:
    from .analysis import _MODULES, ANALYSES
    from .analysis import _load_all as load_analyses

    load_analyses()
    # report order: the package's module order, then third-party analyses in registration order
    order = [m for m in _MODULES if m in ANALYSES] + [m for m in ANALYSES if m not in _MODULES]
    if cfg.analyses:
        return {name: dict(cfg.analyses[name]) for name in sorted(cfg.analyses, key=lambda n: order.index(n) if n in order else len(order))}
    return {name: {} for name in order}


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    """Provenance dicts made safe for JSON/HTML (numpy scalars and arrays become lists/numbers)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 64 else f"array{obj.shape}"
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
