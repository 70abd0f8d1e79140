"""The stages of a study run: extract → measure → analyse → report.

Kept apart from :mod:`matteralign.study` (configuration) so that reading a study file
imports nothing heavy. Every stage skips work whose result is already on disk, and every
result file is written atomically, so an interrupted run resumes where it stopped and
ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, MatterAlignError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .study import Study, StudyResults

#: Fraction of a dataset's samples a model must embed to join the dataset's common sample set.
#: Models below it (e.g. ANI-1x on molecules with elements beyond H, C, N, O) are compared with
#: each other model on the intersection of their own ids, and the row's ``n`` says so.
CORE_COVERAGE = 0.9
#: Per-atom features wider than this are not stored (only the pooled vectors): SOAP at N = 50,000 molecules
#: would need about 20 GB.
MAX_ATOM_FEATURES = 1024

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


def _progress_bar(progress: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=not progress, transient=False,
    )


def _guard_out_dir(study: Study, out: Path) -> None:
    """Refuse an output folder that holds a different study's results (nothing is overwritten)."""
    marker = out / "study.toml"
    if marker.exists():
        first = marker.read_text().splitlines()[:1]
        digest = first[0].removeprefix("# digest: ").strip() if first else ""
        if digest != study.config.digest():
            raise ConfigError(
                f"output folder {str(out)!r} holds results of a different study (digest {digest or '?'} vs "
                f"{study.config.digest()}); choose another --out or delete that folder"
            )
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"output folder {str(out)!r} is not empty and holds no matteralign study; choose another --out")


def _load_datasets(study: Study) -> dict[str, Any]:
    from . import datasets as ds_registry

    cfg = study.config
    out = {}
    for entry in cfg.datasets:
        seed = cfg.seed if entry.seed is None else entry.seed
        full = ds_registry.load(entry.name)
        if entry.n is not None and entry.n > len(full):
            raise ConfigError(f"datasets.{entry.name}.n = {entry.n} is larger than the dataset ({len(full)} samples)")
        out[entry.name] = full.subsample(entry.n, seed=seed)
    return out


#: Model family -> (kind, embedding type of the default layer).
_FAMILY_KIND = {
    "chgnet": ("mlip", "invariant"),
    "sevennet": ("mlip", "invariant"),
    "ani": ("mlip", "invariant"),
    "descriptor": ("descriptor", "descriptor"),
    "cheminformatics": ("descriptor", "descriptor"),
    "lm": ("language", "text"),
    "control": ("control", "random"),
    "mace": ("mlip", "invariant"),
    "fairchem": ("mlip", "invariant"),
    "equiformer_v2": ("mlip", "invariant"),
    "aurora": ("weather", "grid"),
    "mattergen": ("generative", "generative"),
    "orb": ("mlip", "vanilla"),
}


def _model_meta(name: str, layer: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """Metadata the analyses group by: family, kind, embedding type, parameter count, control flag."""
    from . import models as model_registry

    spec = model_registry.get_spec(name)
    kind, emb_type = _FAMILY_KIND.get(spec.family, ("mlip", "vanilla"))
    control = spec.family == "control" or name.endswith("-random")
    if control:
        kind, emb_type = "control", "random"
    elif "equivariant" in layer or layer in ("node_embedding",):
        emb_type = "equivariant"
    elif name.startswith("orb-v3-conservative"):
        emb_type = "equivariant"  # equigrad: the study's Table 1 labels conservative Orb v3 "Equivariant"
    return {
        "family": "control" if control else spec.family,
        "modality": spec.modality,
        "embedding_type": emb_type,
        "kind": kind,
        "n_params": provenance.get("provenance", provenance).get("n_parameters"),
        "control": control,
        "layer": layer,
    }


#: Models that read no view of a sample, only its id (they run on every dataset).
_VIEWLESS = frozenset({"random"})


def _reads(model_name: str, spec, ds) -> bool:
    """Whether ``model_name`` reads some sample of ``ds``: a model skips a dataset that lacks its view
    (a weather model on crystals, an interatomic potential on weather patches)."""
    return model_name in _VIEWLESS or any(s.has(spec.modality) for s in ds)


def _extract(study: Study, store, datasets: dict, progress: bool) -> dict[tuple[str, str], str]:
    """Embed every dataset with every model that reads it (skipping what the store holds); return the layers used."""
    from . import envs
    from . import models as model_registry

    cfg = study.config
    layers: dict[tuple[str, str], str] = {}
    for model_name in cfg.models:
        spec = model_registry.get_spec(model_name)
        options: dict[str, Any] = {}
        if model_name in cfg.checkpoints:
            options["checkpoint"] = cfg.checkpoints[model_name]
            if cfg.trust_checkpoint:
                options["trust_checkpoint"] = True
        if spec.env and envs.current_family() != spec.env:
            # the model lives in its own environment: a worker process of that environment's Python
            # extracts into the same store
            layer = cfg.layers.get(model_name, spec.default_layer)
            if layer not in spec.layers:
                raise ConfigError(f"layers.{model_name} = {layer!r} is not a layer of that model; layers: {list(spec.layers)}")
            for ds_name, ds in datasets.items():
                if not _reads(model_name, spec, ds):
                    continue
                envs.extract_in_env(store.path, ds, model_name, layer=layer, options={"seed": cfg.seed, **options},
                                    shard_size=cfg.shard_size, batch_size=cfg.batch_size,
                                    save_atoms=cfg.save_atoms, progress=progress)
                layers[(ds_name, model_name)] = layer
            continue
        extractor = None
        for ds_name, ds in datasets.items():
            if not _reads(model_name, spec, ds):
                continue
            if extractor is None:
                extractor = model_registry.load(model_name, **options)
            layer = cfg.layers.get(model_name, extractor.default_layer)
            if layer not in extractor.layers():
                raise ConfigError(f"layers.{model_name} = {layer!r} is not a layer of that model; layers: {extractor.layers()}")
            layers[(ds_name, model_name)] = layer
            # very wide per-atom descriptors (SOAP: 3,384 per atom) are kept pooled only
            wide = int(getattr(extractor, "n_features", 0) or 0) > MAX_ATOM_FEATURES
            store.extract(ds, extractor, layer=layer, shard_size=cfg.shard_size, batch_size=cfg.batch_size,
                          progress=progress, save_atoms=cfg.save_atoms and not wide)
        del extractor
    return layers


def _energy_subset(study: Study, ds):
    """The samples whose energies are predicted: up to ``energy_samples`` with a reference energy label.

    The accuracy-vs-alignment analysis needs the reference; the study computes it on a subset, as the
    paper does (1,000 structures), so energy prediction does not double the cost of extraction.
    """
    from .analysis.convergence import reference_label

    label = reference_label(ds)
    if label is None:
        return []
    ok = [s for s in ds if s.atoms is not None and np.isfinite(s.labels.get(label, np.nan))]
    n = study.config.energy_samples
    if len(ok) > n:
        keep = np.sort(np.random.default_rng(study.config.seed).choice(len(ok), size=n, replace=False))
        ok = [ok[i] for i in keep]
    return ok


def _energies(study: Study, store_root: Path, datasets: dict, progress: bool) -> dict[str, dict[str, tuple[list[str], np.ndarray]]]:
    """Predicted energies (eV per structure) of every model that predicts them; cached per (dataset, model)."""
    from . import models as model_registry
    from .samples import Dataset

    out: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {}
    subsets = {name: _energy_subset(study, ds) for name, ds in datasets.items()}
    for model_name in study.config.models:
        if model_registry.get_spec(model_name).env:
            continue  # predict_energy is not available across environments
        extractor = None
        for ds_name, subset in subsets.items():
            if not subset:
                continue
            key = Dataset(ds_name, subset).fingerprint()
            path = store_root / "energies" / ds_name / f"{model_name}-{key}.npz"
            if path.exists():
                z = np.load(path, allow_pickle=False)
                out.setdefault(ds_name, {})[model_name] = (list(z["ids"]), z["energy"])
                continue
            if extractor is None:
                extractor = model_registry.load(model_name)
            if not hasattr(extractor, "predict_energy"):
                break
            ok = [s for s in subset if extractor.supports(s)]
            if not ok:
                continue
            energy = np.asarray(extractor.predict_energy([s.atoms for s in ok]), dtype=float)
            ids = [s.id for s in ok]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, ids=np.array(ids), energy=energy)
            os.replace(tmp, path)
            out.setdefault(ds_name, {})[model_name] = (ids, energy)
    return out


def _measure_dataset(study: Study, ds_name: str, embeddings: dict, layers: dict, progress: bool):
    """Pair and single-model metrics of one dataset → two tidy DataFrames."""
    import pandas as pd

    from .metrics import get_metric, normalize, prepare

    cfg = study.config
    digest = cfg.digest()
    n_total = max(len(e.ids) for e in embeddings.values())
    core = [m for m, e in embeddings.items() if len(e.ids) >= CORE_COVERAGE * n_total]
    partial = [m for m in embeddings if m not in core]
    common = set.intersection(*(set(embeddings[m].ids) for m in core)) if core else set()
    common_ids = [i for i in embeddings[core[0]].ids if i in common] if core else []

    def prep(X):
        return X if cfg.normalize == "none" else normalize(X, method=cfg.normalize)

    metric_list = [(name, dict(params)) for name, params in cfg.metrics.items()]
    k_max = max((int(p["k"]) for _, p in metric_list if "k" in p), default=0) or None
    frames = []
    if len(core) >= 2:
        caches = {m: prepare(prep(embeddings[m].aligned(common_ids)), k_max=k_max, normalize=None, name=m)
                  for m in core}
        for name, params in metric_list:
            frames.append(_pairwise_recording_errors(caches, name, params))
    # partial-coverage models: each pair on the intersection of its own two id sets
    self_done: set[str] = set()
    for a in partial:
        for b in embeddings:
            if b == a or (b in partial and partial.index(b) < partial.index(a)):
                continue
            ids = [i for i in embeddings[a].ids if i in set(embeddings[b].ids)]
            if len(ids) < 10:
                continue
            caches = {m: prepare(prep(embeddings[m].aligned(ids)), k_max=k_max, normalize=None, name=m) for m in (a, b)}
            for name, params in metric_list:
                df = _pairwise_recording_errors(caches, name, params)
                keep = df["model_a"] != df["model_b"]
                if a not in self_done:  # the self pair of a partial model, once
                    keep |= (df["model_a"] == a) & (df["model_b"] == a)
                frames.append(df[keep])
            self_done.add(a)
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAIR_COLUMNS)
    pairs["dataset"] = ds_name
    pairs["layer_a"] = [layers[(ds_name, m)] for m in pairs["model_a"]]
    pairs["layer_b"] = [layers[(ds_name, m)] for m in pairs["model_b"]]
    for col in ("p_value", "ci_low", "ci_high"):
        if col not in pairs:
            pairs[col] = np.nan
    pairs["normalize"] = cfg.normalize
    pairs["seed"] = cfg.seed
    pairs["study"] = digest
    pairs = pairs[[c for c in PAIR_COLUMNS if c in pairs] + [c for c in pairs if c not in PAIR_COLUMNS]]

    rows = []
    for name, param_sets in cfg.model_metrics.items():
        spec = get_metric(name)
        for params in param_sets:
            for m, emb in embeddings.items():
                X = prep(emb.X)
                note = ""
                try:
                    value = float(spec.function(X, **params))
                except MatterAlignError as exc:
                    value, note = np.nan, f"{type(exc).__name__}: {exc}"
                rows.append({"note": note,
                    "dataset": ds_name, "model": m, "layer": layers[(ds_name, m)], "metric": name,
                    "params": json.dumps(params, sort_keys=True), "n": len(emb.ids), "value": value,
                    "normalize": cfg.normalize, "seed": cfg.seed, "study": digest,
                })
    per_model = pd.DataFrame(rows, columns=MODEL_COLUMNS)
    return pairs, per_model


def _pairwise_recording_errors(caches: dict, name: str, params: dict):
    """All pairs of one metric; a pair the metric cannot measure gets NaN and the reason in ``note``.

    Degenerate inputs are real (e.g. composition vectors of elemental crystals have duplicated rows,
    so TwoNN-based IdCor is undefined). The study records why instead of stopping or hiding it.
    """
    import pandas as pd

    from .metrics import get_metric, pairwise

    try:
        df = pairwise(caches, [(name, params)], normalize=None)
        df["note"] = ""
        return df
    except MatterAlignError:
        pass
    spec = get_metric(name)
    rows = []
    names = list(caches)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if spec.symmetric and j < i:
                continue
            try:
                df = pairwise({a: caches[a], b: caches[b]}, [(name, params)], normalize=None)
                df["note"] = ""
                part = df[(df["model_a"] == a) & (df["model_b"] == b)]
                if spec.symmetric and a != b:
                    part = pd.concat([part, df[(df["model_a"] == b) & (df["model_b"] == a)]])
            except MatterAlignError as exc:
                base = {"metric": name, "params": json.dumps(params, sort_keys=True), "n": caches[a].n,
                        "value": np.nan, "normalize": caches[a].normalize, "note": f"{type(exc).__name__}: {exc}"}
                pairs_ = [(a, b)] + ([(b, a)] if spec.symmetric and a != b else [])
                part = pd.DataFrame([{"model_a": x, "model_b": y, **base} for x, y in pairs_])
            rows.append(part)
    return pd.concat(rows, ignore_index=True)


def run_study(study: Study, *, progress: bool = True, report: bool = True) -> StudyResults:
    """Run every stage of ``study`` (see :meth:`matteralign.study.Study.run`)."""
    import pandas as pd

    from .analysis import AnalysisContext, Embedding, get_analysis
    from .store import Store
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
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.toml").write_text(f"# digest: {cfg.digest()}\n# source: {study.source}\n" + study.to_toml())
    store = Store(store_root)
    results_dir = out / "results"

    with _Stage("extract", timings, progress):
        layers = _extract(study, store, datasets, progress)
    with _Stage("energies", timings, progress):
        energies = _energies(study, results_dir, datasets, progress)

    embeddings: dict[str, dict[str, Embedding]] = {}
    for ds_name in datasets:
        embeddings[ds_name] = {}
        for m in cfg.models:
            if (ds_name, m) not in layers:  # the model does not read this dataset's samples
                continue
            layer = layers[(ds_name, m)]
            ids, X = store.read(ds_name, m, layer)
            wanted = set(datasets[ds_name].ids)
            keep = [i for i, s in enumerate(ids) if s in wanted]
            if not keep:
                continue
            embeddings[ds_name][m] = Embedding(
                ids=[ids[i] for i in keep], X=np.asarray(X)[keep], layer=layer,
                provenance=store.provenance(ds_name, m, layer),
            )

    pair_frames, model_frames = [], []
    with _Stage("measure", timings, progress):
        for ds_name, embs in embeddings.items():
            key = _hash(cfg.digest(), ds_name, {m: (e.layer, e.ids) for m, e in embs.items()})
            cache = results_dir / "cache" / f"{ds_name}-{key}"
            if cache.with_suffix(".pairs.parquet").exists() and cache.with_suffix(".models.parquet").exists():
                pairs = pd.read_parquet(cache.with_suffix(".pairs.parquet"))
                per_model = pd.read_parquet(cache.with_suffix(".models.parquet"))
            else:
                pairs, per_model = _measure_dataset(study, ds_name, embs, layers, progress)
                _write_parquet(pairs, cache.with_suffix(".pairs.parquet"))
                _write_parquet(per_model, cache.with_suffix(".models.parquet"))
            pair_frames.append(pairs)
            model_frames.append(per_model)
    from .study import _atomic_write_table

    pairs = pd.concat(pair_frames, ignore_index=True) if pair_frames else pd.DataFrame(columns=PAIR_COLUMNS)
    per_model = pd.concat(model_frames, ignore_index=True) if model_frames else pd.DataFrame(columns=MODEL_COLUMNS)
    _atomic_write_table(pairs, results_dir / "pairs")
    _atomic_write_table(per_model, results_dir / "per_model")

    results = StudyResults(pairs=pairs, per_model=per_model, out=out, timings=timings)
    if not report:
        return results

    report_dir = out / "report"
    analysis_results, failures = [], {}
    models_meta = {}
    for embs in embeddings.values():
        for m, e in embs.items():
            models_meta.setdefault(m, _model_meta(m, e.layer, e.provenance))
    # an analysis whose inputs (study, metric tables, energies, its parameters) are unchanged is not run again
    inputs_key = _hash(cfg.digest(), _frame_digest(pairs), _frame_digest(per_model),
                       {d: {m: list(e[0]) for m, e in v.items()} for d, v in energies.items()}, models_meta,
                       matteralign_version())
    with _Stage("analyse", timings, progress):
        for name, params in _analysis_plan(cfg).items():
            fig_dir = report_dir / "figures" / name
            deps = [r.name for r in analysis_results] if name == "findings" else []
            cached = results_dir / "analysis" / f"{name}-{_hash(inputs_key, name, params, deps)}.pkl"
            if cached.exists():
                res = _load_result(cached)
                if res is not None:
                    analysis_results.append(res)
                    continue
            fig_dir.mkdir(parents=True, exist_ok=True)
            ctx = AnalysisContext(
                out_dir=fig_dir, datasets=datasets, embeddings=embeddings, models=models_meta, pairs=pairs,
                per_model=per_model, energies=energies, params=params, normalize=cfg.normalize, seed=cfg.seed,
                results={r.name: r for r in analysis_results},
            )
            t0 = time.perf_counter()
            try:
                res = get_analysis(name)(ctx)
            except MatterAlignError as exc:
                failures[name] = str(exc)
                continue
            except Exception:  # an analysis bug must not lose the other results; it is shown in the report
                failures[name] = traceback.format_exc()
                continue
            timings[f"analysis:{name}"] = time.perf_counter() - t0
            for tname, table in res.tables.items():
                _atomic_write_table(table, results_dir / "analysis" / name / tname)
            _save_result(res, cached)
            analysis_results.append(res)

    with _Stage("report", timings, progress):
        from .report import write_report

        timings["total"] = time.perf_counter() - t_start
        provenance = {
            "environment": study.environment(),
            "study_digest": cfg.digest(),
            "study_source": study.source,
            "datasets": {k: {"n": len(v), "fingerprint": v.fingerprint(), **_jsonable(v.meta)} for k, v in datasets.items()},
            "models": {
                f"{ds}/{m}": _jsonable(e.provenance) for ds, embs in embeddings.items() for m, e in embs.items()
            },
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "analysis_failures": failures,
        }
        results.report = write_report(
            analysis_results, out_dir=report_dir, study=cfg.model_dump(), provenance=provenance,
            tables_dir=results_dir,
        )
    if failures and progress:
        from rich.console import Console

        Console(stderr=True).print(f"[yellow]warning:[/] {len(failures)} analysis(es) failed: {', '.join(failures)}; see the report")
    return results


def matteralign_version() -> str:
    from . import __version__

    return __version__


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
