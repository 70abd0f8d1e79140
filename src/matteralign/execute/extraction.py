"""Extraction as units: plan the shards a store still lacks, run them, commit them.

>>> from matteralign.execute import extract
>>> extract("runs/store", dataset, "chgnet-0.3.0", workers=2)      # doctest: +SKIP

:func:`plan_extraction` is used by :func:`extract` (one dataset, one model) and by the study (every
dataset and model at once, so all of them share one executor).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InputError, UnknownNameError
from .commit import Committer, ExtractionJob
from .units import ExtractUnit, Resources

__all__ = ["plan_extraction", "extract", "model_plan", "MAX_ATOM_FEATURES", "resources_for"]

#: Per-atom features wider than this are not stored (only the pooled vectors): SOAP at N = 50,000 molecules
#: would need about 20 GB.
MAX_ATOM_FEATURES = 1024

_POOLINGS = ("mean", "sum", "max")


def resources_for(spec, *, use_gpu: bool = False, cpus: float = 1.0) -> Resources:
    """A unit's resources for model ``spec``: a GPU only when the model can use one *and* it is asked for."""
    return Resources(cpus=float(cpus), gpus=1.0 if (use_gpu and spec is not None and spec.gpu) else 0.0,
                     memory_gb=getattr(spec, "memory_gb", None))


def _layers_of(model, layer: str | None, layers: Sequence[str] | None) -> tuple[str, ...]:
    """The requested layers, checked against the model (default layer when none is asked for)."""
    asked = list(layers or ([] if layer is None else [layer]))
    if isinstance(model, str):
        from ..models import get_spec

        spec = get_spec(model)
        known, default = list(spec.layers), spec.default_layer
        if "all" in asked:
            from ..models import expand_layers

            return tuple(expand_layers(spec, "all"))  # forward order, exact aliases left out
    else:
        known, default = list(model.layers()), model.default_layer
        if "all" in asked:
            return tuple(model.resolve_layers(asked))  # forward order, exact aliases left out
    if not asked:
        return (default,)
    out = []
    for lay in asked:
        if lay not in known:
            name = model if isinstance(model, str) else model.name
            from ..models._registry import unknown_layer

            raise unknown_layer(name, lay, known)
        if lay not in out:
            out.append(lay)
    return tuple(out)


#: Adapter options that never change the features (where and how fast a model runs, or consent to unpickle).
_NEUTRAL_OPTIONS = frozenset({"trust_checkpoint", "device", "num_threads", "batch_size"})


def _file_fingerprint(path: str) -> dict[str, Any]:
    """Size and a digest of the first and last MiB of ``path`` (of every file, for a folder): a checkpoint
    swapped at the same path — fine-tuned weights of the same size included — changes it, a moved one does not."""
    import hashlib

    def one(f: str) -> list:
        size = os.path.getsize(f)
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(size - (1 << 20))
                h.update(fh.read(1 << 20))
        return [size, h.hexdigest()[:16]]

    if os.path.isdir(path):
        files = sorted(os.path.relpath(os.path.join(r, f), path) for r, _d, fs in os.walk(path) for f in fs)
        return {"files": {f: one(os.path.join(path, f)) for f in files}}
    if os.path.isfile(path):
        size, digest = one(path)
        return {"size": size, "sha256_head_tail": digest}
    return {"missing": os.path.basename(str(path))}


def model_plan(options: dict[str, Any] | None) -> dict[str, Any]:
    """What of the adapter ``options`` decides the features, for the store's plan: every option but the neutral
    ones (device, threads, batch size, trust), with a checkpoint by its contents rather than its path. A layer
    extracted with other options (another checkpoint, seed or lead time) is then never reused for these."""
    out: dict[str, Any] = {}
    for k, v in sorted((options or {}).items()):
        if k in _NEUTRAL_OPTIONS:
            continue
        out[k] = _file_fingerprint(str(v)) if k == "checkpoint" and v else v
    return out


def plan_extraction(store, dataset, model, *, layers: tuple[str, ...], options: dict[str, Any] | None = None,
                    shard_size: int = 256, batch_size: int | None = None, poolings: Sequence[str] = ("mean",),
                    save_atoms: bool = True, overwrite: bool = False, env: str | None = None,
                    resources: Resources | None = None,
                    with_energy: bool = False) -> tuple[ExtractionJob, list[ExtractUnit]]:
    """The job and the units still to run for one ``(dataset, model)`` (committed shards are skipped).

    The store is opened (or resumed) for every layer: a stored plan that differs is refused here,
    before any unit runs, unless it differs only in the samples it covers: then the samples every
    layer already holds are reused (:meth:`~matteralign.store.Store.reusable_ids`) and the units cover
    only the others, so raising a dataset's ``n`` computes just the new samples.
    """
    from ..samples import Dataset

    if not isinstance(dataset, Dataset):
        raise InputError(f"extract expects a matteralign Dataset; got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise InputError(f"dataset {dataset.name!r} is empty; nothing to extract")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise InputError(f"shard_size must be a positive integer; got {shard_size!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer; got {batch_size!r}")
    poolings = tuple(dict.fromkeys(["mean", *poolings]))
    for p in poolings:
        if p not in _POOLINGS:
            raise UnknownNameError("pooling", str(p), _POOLINGS)
    name = model if isinstance(model, str) else model.name
    plan = {"dataset_fingerprint": dataset.fingerprint(), "n_samples": len(dataset), "shard_size": int(shard_size),
            "poolings": list(poolings), "save_atoms": bool(save_atoms), "model_options": model_plan(options)}
    # samples every layer already holds (e.g. the same dataset at a smaller n) are not computed again
    reuse = [None] if overwrite else [store.reusable_ids(dataset.name, name, lay, plan=plan) for lay in layers]
    stored = set.intersection(*reuse) if all(r is not None for r in reuse) else set()
    samples = [s for s in dataset.samples if s.id not in stored] if stored else dataset.samples
    with_energy = with_energy and not stored  # energies of reused samples come from energy units
    blocks = [samples[s:s + shard_size] for s in range(0, len(samples), shard_size)]
    block_ids = [[s.id for s in b] for b in blocks]
    todo: set[int] = set()
    for layer in layers:
        state = store.begin(dataset.name, name, layer, plan=plan, blocks=block_ids, dataset_meta=dataset.meta,
                            overwrite=overwrite, order=dataset.ids)
        todo |= set(state["todo"])
    job = ExtractionJob(dataset=dataset.name, model=name, layers=layers, n_shards=len(blocks), todo=sorted(todo),
                        poolings=poolings, save_atoms=save_atoms, with_energy=with_energy)
    units = [ExtractUnit(dataset=dataset.name, model=name, layers=layers, shard=k, samples=list(blocks[k]),
                         options=dict(options or {}), env=env, resources=resources or Resources(),
                         batch_size=batch_size, with_energy=with_energy)
             for k in job.todo]
    return job, units


def extract(store, dataset, model, *, layer: str | None = None, layers: Sequence[str] | None = None,
            options: dict[str, Any] | None = None, shard_size: int = 256, batch_size: int | None = None,
            poolings: Sequence[str] = ("mean",), save_atoms: bool = True, overwrite: bool = False,
            progress: bool | Callable[[int, int], None] = True, executor=None, workers: int | None = None,
            threads: int | None = None) -> dict[str, Any]:
    """Embed ``dataset`` with ``model`` into ``store``, resuming an interrupted run.

    Parameters
    ----------
    store : Store or path
        The embedding store (created when missing).
    dataset : Dataset
        Samples with stable ids.
    model : str or Extractor
        A registered model name (it runs where :mod:`~matteralign.execute.placement` says: its own
        environment or the project's) or an extractor instance (run in this process).
    layer : str, optional
        One layer (the model's default when neither ``layer`` nor ``layers`` is given).
    layers : sequence of str, optional
        Several layers, captured in one forward pass where the adapter can; ``["all"]``: every layer.
    options : dict, optional
        Adapter options (``checkpoint``, ``trust_checkpoint``, ``seed``...), JSON-serialisable.
    shard_size : int
        Samples per shard (the unit of work, of atomic commit and of resumption).
    batch_size : int, optional
        Inputs per forward pass.
    poolings : sequence of {"mean", "sum", "max"}
        Pooled arrays to store; ``mean`` is always stored.
    save_atoms : bool
        Keep the per-atom features (not for models wider than :data:`MAX_ATOM_FEATURES` per atom).
    overwrite : bool
        Discard stored embeddings of these layers first.
    progress : bool or callable
        A Rich progress bar, or ``progress(done_samples, total_samples)`` after each shard.
    executor : Executor or str, optional
        ``"local"`` (default for a model name), ``"inline"`` (default for an instance), ``"ray"``, or an
        executor object (left open).
    workers, threads : int, optional
        For a named executor: units at a time and threads per worker.

    Returns
    -------
    dict
        The store's summary of the first layer (``dataset``, ``model``, ``layer``, ``n``, ``n_skipped``,
        ``dim``, ``computed_shards``, ``seconds``, ``path``); with several layers, ``layers`` maps each
        layer to its summary.
    """
    from ..store import Store, wait_for_discards
    from .executors import Executor, InlineExecutor, get_executor
    from .progress import unit_progress

    if not isinstance(store, Store):
        store = Store(os.fspath(store))
    instance = not isinstance(model, str)
    lays = _layers_of(model, layer, layers)
    env = None
    if not instance:
        from . import placement

        env = placement.env_of(model)
        if env is not None:
            placement.python_for(env)  # a missing environment fails here, before any work
    job, units = plan_extraction(store, dataset, model, layers=lays, options=options, shard_size=shard_size,
                                 batch_size=batch_size, poolings=poolings, save_atoms=save_atoms,
                                 overwrite=overwrite, env=env)
    committer = Committer(store, {(job.dataset, job.model): job})
    own = not isinstance(executor, Executor)
    if instance:
        if executor not in (None, "inline"):
            raise InputError("an Extractor instance runs in this process (executor='inline'); pass a model name "
                             "to run it in worker processes")
        ex = InlineExecutor(extractor=model)
    elif own:
        ex = get_executor(executor or "local", workers=workers if workers is not None else min(
            len(units) or 1, _default_workers()), threads=threads)
    else:
        ex = executor
    try:
        if units:
            with unit_progress(progress, len(dataset), f"{dataset.name} · {job.model}",
                               done=len(dataset) - sum(len(u.samples) for u in units)) as advance:
                ex.run(units, committer, progress=lambda u: advance(len(u.samples)))
        if not job.summaries:
            committer.finish(job)
    finally:
        if own:
            ex.close()
        wait_for_discards()  # the store is complete on return: no deletion of finished shards runs inside it
    first = {**job.summaries[job.layers[0]], "env": env}
    return {**first, "layers": job.summaries} if len(job.layers) > 1 else first


def _default_workers() -> int:
    from .executors import available_cpus

    return available_cpus()
