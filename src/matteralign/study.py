"""A study: one TOML file → extract → measure → analyse → report, resumably.

A study names datasets (with sample counts and a seed), models (and layers), the
normalisation, the metrics with their parameters, the analyses, and an output folder.
:meth:`Study.run` runs every stage, skipping what the store or the results folder
already hold, and returns the tidy result tables. Killing a run at any point and running
it again gives results identical to an uninterrupted run: embeddings are committed per
shard by the store, metric tables per dataset by an atomic write.

Layout of the output folder::

    <out>/study.toml            the resolved study (written first; guards against mixing studies)
    <out>/store/                zarr embedding store (unless ``store`` points elsewhere)
    <out>/results/pairs.{parquet,csv}       one row per (dataset, model pair, metric, params)
    <out>/results/per_model.{parquet,csv}   one row per (dataset, model, metric, params)
    <out>/results/energies/     predicted energies of energy models
    <out>/results/analysis/     one CSV per analysis table
    <out>/report/index.html     the report
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, MatterAlignError

__all__ = ["Study", "StudyConfig", "StudyResults", "default_study_text"]

NORMALIZATIONS = ("l2", "max", "clamp95", "none")

#: Metrics measured on every pair by default (name -> params).
DEFAULT_PAIR_METRICS: dict[str, dict[str, Any]] = {
    "cknna": {"k": 25},
    "mutual_knn": {"k": 10},
    "unbiased_cka": {},
    "dcor2": {},
    "information_imbalance": {"k": 1},
    "idcor": {},
}
#: Single-model measures by default: name -> list of parameter sets.
DEFAULT_MODEL_METRICS: dict[str, list[dict[str, Any]]] = {
    "intrinsic_dimension": [{"method": "twonn"}, {"method": "mle", "k": 50}],
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetEntry(_Strict):
    """One dataset of the study: its registered name (or a file path), sample count and seed."""

    name: str
    n: int | None = Field(default=None, ge=4, description="number of samples (None: all)")
    seed: int | None = Field(default=None, description="subsampling seed (default: the study seed)")


class CalibrationConfig(_Strict):
    """Nulls and intervals of every pair value (``[calibration]``; see :mod:`matteralign.metrics.calibration`)."""

    enabled: bool = Field(default=True, description="permutation null, calibrated scores and interval per pair")
    n_permutations: int = Field(default=100, ge=1, description="permutations per null (add-one p-values)")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="level of the calibration threshold tau")
    n_subsamples: int = Field(default=20, ge=0, description="half-samples of the interval over samples (0: off)")
    fraction: float = Field(default=0.5, gt=0, lt=1, description="subsample size / N of the interval")
    confidence: float = Field(default=0.95, gt=0, lt=1, description="level of the interval")
    null_max_n: int | None = Field(default=None, ge=10, description="largest N of a null (above: a seeded subset)")
    fdr: float = Field(default=0.05, gt=0, lt=1, description="Benjamini-Hochberg level marking significant pairs")


class ExecutionConfig(_Strict):
    """Where the units of work run (``[execution]``); it never changes a result, so it is not in the digest."""

    executor: str = Field(default="local", description="local | ray | inline")
    workers: int | None = Field(default=None, ge=1, description="units at a time (default: every core)")
    threads: int | None = Field(default=None, ge=1, description="threads per worker (default 1: the same numbers "
                                "for any number of workers)")
    address: str | None = Field(default=None, description="Ray: auto, HOST:PORT, or none for a local Ray")
    gpus: bool = Field(default=False, description="give a GPU to each unit of a model that can use one")
    pair_block: int | None = Field(default=24, ge=1, description="models per tile of the pair blocks")
    measure_threads: int = Field(default=1, ge=1, description=(
        "threads of each measure unit, the same on every executor so that the numbers are too; the stage's "
        "parallelism comes from running its units side by side"))

    @field_validator("executor")
    @classmethod
    def _check_executor(cls, v: str) -> str:
        if v not in ("local", "ray", "inline"):
            raise ValueError(f"must be one of local, ray, inline; got {v!r}")
        return v


class StudyConfig(_Strict):
    """The validated content of a study TOML file."""

    name: str = "study"
    seed: int = 0
    out: str = "runs/study"
    store: str | None = None
    normalize: str = "l2"
    datasets: list[DatasetEntry]
    models: list[str] = Field(description=(
        'registered names; NAME@LABEL (or a table { name = NAME, as = LABEL, checkpoint = PATH }) runs NAME '
        'under its own name, so two checkpoints of one architecture can sit side by side'))
    layers: dict[str, str | list[str]] = Field(
        default_factory=dict, description='model -> a layer, a list of layers, or "all" (forward order)')
    checkpoints: dict[str, str] = Field(default_factory=dict, description="model -> local checkpoint path")
    trust_checkpoint: bool = Field(default=False, description="allow pickled checkpoints (loading them can run code)")
    lead_time_hours: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description=("forecast lead time [h] given to every weather model (kind 'weather'); recorded in each "
                     "model's provenance. climax feeds it to its lead-time embedding; graphcast and aurora take "
                     "only their fixed 6 h step (another value is an error). None: each model's default, 6 h"))
    metrics: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(DEFAULT_PAIR_METRICS))
    model_metrics: dict[str, list[dict[str, Any]]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_MODEL_METRICS.items()}
    )
    analyses: dict[str, dict[str, Any]] = Field(default_factory=dict)
    batch_size: int = Field(default=16, ge=1)
    shard_size: int = Field(default=256, ge=1)
    energy_samples: int = Field(default=200, ge=0, description="samples per dataset whose energies are predicted")
    save_atoms: bool = Field(default=True, description="keep per-atom features in the store (pooled are always kept)")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    allow_partial: bool = Field(default=False, description="exit 0 when some requested numbers could not be "
                                "computed (the summary of what is missing is printed either way)")

    @model_validator(mode="before")
    @classmethod
    def _model_tables(cls, data: Any) -> Any:
        """``{ name = NAME, as = LABEL, checkpoint = PATH }`` entries of ``models`` → ``"NAME@LABEL"`` and
        a ``checkpoints`` entry (the form the rest of the study uses)."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            return data
        if not any(isinstance(m, dict) for m in data["models"]):
            return data
        names, ckpts = [], dict(data.get("checkpoints") or {})
        for i, m in enumerate(data["models"]):
            if not isinstance(m, dict):
                names.append(m)
                continue
            unknown = set(m) - {"name", "as", "checkpoint"}
            if unknown or not isinstance(m.get("name"), str):
                raise ValueError(f"models[{i}] = {m!r}: a model table has the keys name (required), as and "
                                 f"checkpoint" + (f"; unknown: {sorted(unknown)}" if unknown else ""))
            label = m.get("as")
            if label is not None and (not isinstance(label, str) or not label):
                raise ValueError(f"models[{i}].as = {label!r}; expected a non-empty label")
            name = f"{m['name']}@{label}" if label else m["name"]
            if "checkpoint" in m:
                if name in ckpts and ckpts[name] != m["checkpoint"]:
                    raise ValueError(f"models[{i}]: checkpoint {m['checkpoint']!r} of {name!r} differs from "
                                     f"checkpoints.{name} = {ckpts[name]!r}")
                ckpts[name] = m["checkpoint"]
            names.append(name)
        return {**data, "models": names, "checkpoints": ckpts}

    @field_validator("normalize")
    @classmethod
    def _check_normalize(cls, v: str) -> str:
        if v not in NORMALIZATIONS:
            raise ValueError(f"must be one of {', '.join(NORMALIZATIONS)}; got {v!r}")
        return v

    @field_validator("models")
    @classmethod
    def _check_models(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one model is needed")
        if len(set(v)) != len(v):
            raise ValueError(f"models are listed twice: {sorted({m for m in v if v.count(m) > 1})}")
        return v

    @field_validator("datasets")
    @classmethod
    def _check_datasets(cls, v: list[DatasetEntry]) -> list[DatasetEntry]:
        if not v:
            raise ValueError("at least one dataset is needed")
        names = [d.name for d in v]
        if len(set(names)) != len(names):
            raise ValueError(f"datasets are listed twice: {names}")
        return v

    def digest(self) -> str:
        """Hash of everything that changes results (not the output location)."""
        payload = self.model_dump(exclude={"out", "store", "name", "execution", "allow_partial"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_metric_params(where: str, spec, params: dict[str, Any], n: int | None) -> None:
    """Check one metric's parameters with the metric's own checks, on a small seeded input, before any work.

    Unknown names are refused against the metric's registered parameters; values (``k`` >= 1, method
    names, precisions, ...) are checked by calling the metric itself on a few dozen random samples, so
    the study refuses exactly what the metric would refuse at measure time.
    """
    import inspect

    import numpy as np

    unknown = set(params) - set(spec.params)
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {sorted(unknown)}; known: {sorted(spec.params)}")
    accepted = inspect.signature(spec.function).parameters
    for key, value in params.items():
        default = spec.params.get(key)
        if key in accepted and default is not None and not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)):
            raise ConfigError(f"{where}: parameter {key} = {value!r} should be a {type(default).__name__} "
                              f"(default {default!r})")
        if isinstance(value, bool) and isinstance(default, (int, float)) and not isinstance(default, bool):
            raise ConfigError(f"{where}: parameter {key} = {value!r} should be a {type(default).__name__}")
    k = params.get("k", spec.params.get("k"))
    which = "" if "k" in params else " (the metric's default)"
    if isinstance(k, int) and k < 1:
        raise ConfigError(f"{where}: k = {k}; expected a neighbour count of at least 1")
    if isinstance(k, int) and n is not None and k >= n and not which:  # a default k too large: reported as missing
        raise ConfigError(f"{where}: k = {k}{which} needs more samples than the study's smallest dataset has "
                          f"({n}); expected k <= {n - 1}")
    n_try = max(40, (k if isinstance(k, int) else 0) + 2)
    if n_try > 5000:
        return  # a dry run would be slow; the metric checks the rest when it runs
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_try, 6))
    Y = X @ rng.standard_normal((6, 5)) + 0.3 * rng.standard_normal((n_try, 5))
    try:
        spec.function(X, Y, **params) if spec.arity == 2 else spec.function(X, **params)
    except (MatterAlignError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {', '.join(f'{k_} = {v!r}' for k_, v in params.items()) or 'defaults'} "
                          f"refused by the metric: {exc}") from None


def _check_analysis_params(name: str, params: dict[str, Any], cfg: StudyConfig) -> None:
    """Check an analysis's options against the options it declares (see ``register_analysis``)."""
    from .analysis import analysis_options
    from .metrics import get_metric

    known = analysis_options(name)
    if known is not None:
        unknown = set(params) - set(known)
        if unknown:
            listing = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"analyses.{name}: unknown option(s) {sorted(unknown)}; known: {listing}")
    for key, value in params.items():
        if key in ("k", "k_ref") and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"analyses.{name}: {key} = {value!r}; expected an integer of at least 1")
        if key == "ks" and (not isinstance(value, list) or not value or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
            raise ConfigError(f"analyses.{name}: ks = {value!r}; expected a list of integers of at least 1")
        if key in ("metric", "color") and isinstance(value, str):
            try:
                get_metric(value)
            except MatterAlignError as exc:
                raise ConfigError(f"analyses.{name}: {key} = {value!r}: {exc}") from None
        if key.endswith("_dataset") and isinstance(value, str) and value not in [d.name for d in cfg.datasets]:
            raise ConfigError(f"analyses.{name}: {key} = {value!r} is not among the study's datasets "
                              f"{[d.name for d in cfg.datasets]}")


def _problems_message(source: str, found: list[dict[str, str]]) -> str:
    """One message listing every missing checkpoint and every model that cannot run here."""
    ckpt = [f"{p['model']} = {p['path']!r}" for p in found if p["what"] == "checkpoint"]
    mods = [f"{p['model']} ({p['reason']})" for p in found if p["what"] == "model"]
    parts = [f"{len(ckpt)} checkpoint path{' does' if len(ckpt) == 1 else 's do'} not exist: {', '.join(ckpt)}"] \
        if ckpt else []
    parts += [f"{len(mods)} model{' cannot' if len(mods) == 1 else 's cannot'} run here: {'; '.join(mods)}"] \
        if mods else []
    return f"study {source}: " + "; and ".join(parts)


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        value = e.get("input")
        shown = "" if e["type"] in ("missing",) or isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return f"invalid study {source}: " + "; ".join(lines)


def default_study_text() -> str:
    """The bundled default study (what ``make run`` runs), as TOML text."""
    return resources.files("matteralign").joinpath("studies/default.toml").read_text()


@dataclass
class StudyResults:
    """The tables a study produces."""

    pairs: Any  # pandas.DataFrame
    per_model: Any  # pandas.DataFrame
    report: Path | None = None
    out: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Requested numbers that could not be computed: dataset, metric, params, what (pair or model), reason.
    missing: list[dict[str, Any]] = field(default_factory=list)
    #: Analyses that failed: name -> the error.
    failed_analyses: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every requested number was computed and every analysis ran."""
        return not self.missing and not self.failed_analyses

    def summary(self, *, max_examples: int = 4) -> str:
        """What could not be computed, one line per (dataset, metric, reason), then the failed analyses.

        Returns
        -------
        str
            Empty when the study is complete.
        """
        groups: dict[tuple, list[str]] = {}
        for m in self.missing:
            groups.setdefault((m["dataset"], m["metric"] or "-", m["params"], m["reason"]), []).append(m["what"])
        lines = []
        for (ds, metric, params, reason), whats in groups.items():
            shown = ", ".join(whats[:max_examples]) + (f", ... ({len(whats)} in all)" if len(whats) > max_examples else "")
            lines.append(f"  {ds} · {metric} {params}: {shown} — {reason.splitlines()[0] if reason else ''}")
        for name, err in self.failed_analyses.items():
            last = [x for x in str(err).strip().splitlines() if x.strip()]
            lines.append(f"  analysis {name} failed: {last[-1] if last else ''}")
        if not lines:
            return ""
        parts = [f"{len(self.missing)} requested number(s) could not be computed"] if self.missing else []
        parts += [f"{len(self.failed_analyses)} analysis(es) failed"] if self.failed_analyses else []
        head = " and ".join(parts) + ":"
        return "\n".join([head, *lines])


def _atomic_write_table(df, path: Path) -> None:
    """Write ``df`` to ``path``.parquet and ``path``.csv atomically (write, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix, writer in ((".parquet", lambda p: df.to_parquet(p, index=False)), (".csv", lambda p: df.to_csv(p, index=False))):
        final = path.with_suffix(suffix)
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        writer(tmp)
        os.replace(tmp, final)


def _console():
    from rich.console import Console

    return Console(stderr=True)


class Study:
    """A validated study, ready to run.

    Parameters
    ----------
    config : StudyConfig
    source : str
        Where the config came from (for messages and the report).

    Examples
    --------
    >>> study = Study.from_toml("study.toml")          # doctest: +SKIP
    >>> results = study.run()                          # doctest: +SKIP
    >>> results.pairs.query("metric == 'cknna'")       # doctest: +SKIP
    """

    def __init__(self, config: StudyConfig, *, source: str = "<memory>"):
        self.config = config
        self.source = source

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> Study:
        """Validate a study given as a dict (the parsed TOML)."""
        try:
            return cls(StudyConfig.model_validate(data), source=source)
        except ValidationError as err:
            raise ConfigError(_format_validation_error(err, source)) from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike | None = None) -> Study:
        """Read and validate a study file; ``None`` gives the bundled default study."""
        if path is None:
            text, source = default_study_text(), "default study"
        else:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"study file {str(p)!r} does not exist")
            try:
                text, source = p.read_text(encoding="utf-8"), str(p)
            except UnicodeDecodeError as exc:
                raise ConfigError(f"study file {str(p)!r} is not UTF-8 text (byte {exc.start}); a study is a TOML "
                                  "file") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"study file {source} is not valid TOML: {err}") from None
        return cls.from_dict(data, source=source)

    def override(
        self,
        *,
        datasets: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        n: int | None = None,
        seed: int | None = None,
        out: str | None = None,
        execution: dict[str, Any] | None = None,
        store: str | None = None,
    ) -> Study:
        """A copy with command-line overrides applied (``--dataset``, ``--model``, ``--n``, ``--seed``, ``--out``,
        ``--store``, and ``--executor``/``--address``/``--workers`` as ``execution``)."""
        data = self.config.model_dump()
        if execution:
            data["execution"] = {**data["execution"], **{k: v for k, v in execution.items() if v is not None}}
        if datasets:
            known = {d["name"]: d for d in data["datasets"]}
            data["datasets"] = [known.get(name, {"name": name, "n": None, "seed": None}) for name in datasets]
        if models:
            data["models"] = list(models)
        if n is not None:
            for d in data["datasets"]:
                d["n"] = n
        if seed is not None:
            data["seed"] = seed
            for d in data["datasets"]:
                d["seed"] = None
        if out is not None:
            data["out"] = out
        if store is not None:
            data["store"] = store
        return Study.from_dict(data, source=self.source + " (with overrides)")

    # ------------------------------------------------------------------ validation
    def problems(self) -> list[dict[str, str]]:
        """Every reason the study's models cannot run here, all at once (names are not checked: see
        :meth:`validate`).

        Returns
        -------
        list of dict
            One row per problem, in the order of ``models``: ``model``, ``what`` (``"checkpoint"``: the
            checkpoint path does not exist; ``"model"``: the model cannot run here, e.g. its environment is
            not built or it needs a checkpoint the study does not give), ``path`` (the checkpoint path or
            ``""``) and ``reason``. Empty when every model can run.
        """
        from .execute.placement import unavailable_reason

        cfg = self.config
        out = []
        for name in cfg.models:
            path = cfg.checkpoints.get(name)
            if path is not None and not Path(path).exists():
                out.append({"model": name, "what": "checkpoint", "path": str(path),
                            "reason": f"checkpoint path {path!r} does not exist"})
            reason = unavailable_reason(name, checkpoint_given=path is not None)
            if reason:
                out.append({"model": name, "what": "model", "path": "", "reason": reason})
        return out

    def validate(self, *, files: bool = True) -> None:
        """Check every name before any work starts (models, datasets, metrics, analyses, layers).

        Parameters
        ----------
        files : bool
            Also check that every model can run here and every checkpoint path exists (:meth:`problems`);
            the error then lists every missing checkpoint and every model that cannot run, not just the
            first. ``False`` checks the names and parameters only (a study file with placeholder paths).

        Raises
        ------
        ConfigError
            The first bad name or parameter, or (``files=True``) every problem of :meth:`problems`.
        """
        from . import datasets as ds_registry
        from . import models as model_registry
        from .analysis import get_analysis
        from .metrics import get_metric

        cfg = self.config
        for name in cfg.models:
            model_registry.get_spec(name)
        for name in cfg.checkpoints:
            if name not in cfg.models:
                raise ConfigError(f"checkpoints: model {name!r} is not among the study's models {cfg.models}")
        for name, value in cfg.layers.items():
            if name not in cfg.models:
                raise ConfigError(f"layers: model {name!r} is not among the study's models {cfg.models}")
            try:
                model_registry.expand_layers(model_registry.get_spec(name), value)
            except MatterAlignError as exc:
                raise ConfigError(f"layers.{name}: {exc}") from None
        for d in cfg.datasets:
            if d.name not in ds_registry.names() and not Path(d.name).exists():
                from .errors import UnknownNameError

                raise UnknownNameError("dataset", d.name, ds_registry.names())
        n_known = [d.n for d in cfg.datasets if d.n is not None]
        for name, params in cfg.metrics.items():
            spec = get_metric(name)
            if spec.arity != 2:
                raise ConfigError(f"metrics: {name!r} measures one model; list it under model_metrics")
            chosen = params != DEFAULT_PAIR_METRICS.get(name)  # a default k too large is reported as missing
            _check_metric_params(f"metrics.{name}", spec, params, min(n_known) if n_known and chosen else None)
        for name, param_sets in cfg.model_metrics.items():
            spec = get_metric(name)
            if spec.arity != 1:
                raise ConfigError(f"model_metrics: {name!r} compares two models; list it under metrics")
            for i, params in enumerate(param_sets):
                chosen = params not in DEFAULT_MODEL_METRICS.get(name, [])
                _check_metric_params(f"model_metrics.{name}[{i}]", spec, params,
                                     min(n_known) if n_known and chosen else None)
        for name, params in cfg.analyses.items():
            get_analysis(name)
            _check_analysis_params(name, params, cfg)
        if files:
            found = self.problems()
            if found:
                raise ConfigError(_problems_message(self.source, found))

    def check_sizes(self, sizes: dict[str, int]) -> None:
        """Check the metric parameters against the datasets' sample counts once they are known.

        Parameters
        ----------
        sizes : dict of str to int
            Dataset name → number of samples the study measures.

        Raises
        ------
        ConfigError
            A neighbour count ``k`` is not below a dataset's number of samples.
        """
        cfg = self.config
        sets = [(f"metrics.{n}", n, p) for n, p in cfg.metrics.items()]
        sets += [(f"model_metrics.{n}[{i}]", n, p) for n, ps in cfg.model_metrics.items() for i, p in enumerate(ps)]
        for where, name, params in sets:
            if params == DEFAULT_PAIR_METRICS.get(name) or params in DEFAULT_MODEL_METRICS.get(name, []):
                continue  # a default k too large for a dataset is reported with the missing numbers
            k = params.get("k")
            for ds, n in sizes.items():
                if isinstance(k, int) and not isinstance(k, bool) and k >= n:
                    raise ConfigError(f"{where}: k = {k} needs more samples than dataset {ds!r} has ({n}); "
                                      f"expected k <= {n - 1}: lower k or raise the dataset's n")

    # ------------------------------------------------------------------ running
    def run(self, *, progress: bool = True, report: bool = True, executor=None) -> StudyResults:
        """Run extract → energies → measure → analyse → report; return the result tables.

        Parameters
        ----------
        progress : bool
            Rich progress per stage.
        report : bool
            Run the analyses and write the report (else stop after the metric tables).
        executor : Executor or str, optional
            An open executor (:func:`matteralign.execute.get_executor`; left open) or its name; default:
            the study's ``[execution]`` table (local worker processes on every core).
        """
        from .study_runner import run_study

        return run_study(self, progress=progress, report=report, executor=executor)

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def to_toml(self) -> str:
        """The resolved study as TOML text."""
        return _to_toml(self.config.model_dump(exclude_none=True))

    def environment(self) -> dict[str, Any]:
        """Versions of Python and the packages that produce numbers (for provenance)."""
        from importlib.metadata import PackageNotFoundError, version

        out = {"python": platform.python_version(), "platform": platform.platform(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for pkg in ("matteralign", "numpy", "scipy", "faiss-cpu", "torch", "chgnet", "sevenn", "torchani", "rdkit", "ase",
                    "pymatgen", "tblite", "dscribe", "transformers", "scikit-learn", "umap-learn", "scikit-bio", "zarr"):
            try:
                out[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
        return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k) if not k.isidentifier() else k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise MatterAlignError(f"cannot write {v!r} to TOML")


def _to_toml(data: dict[str, Any]) -> str:
    lines, tables = [], []
    for k, v in data.items():
        if k == "datasets":
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in tables:
        lines.append(f"\n[{k}]")
        for kk, vv in v.items():
            key = kk if kk.replace("-", "_").isidentifier() else json.dumps(kk)
            lines.append(f"{key} = {_toml_value(vv)}")
    for d in data.get("datasets", []):
        lines.append("\n[[datasets]]")
        for kk, vv in d.items():
            lines.append(f"{kk} = {_toml_value(vv)}")
    return "\n".join(lines) + "\n"
