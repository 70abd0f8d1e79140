"""Units of work: what a stage asks an executor to run.

A unit is pure: its inputs travel with it and its result comes back to the driver, which commits it
(:mod:`matteralign.execute.commit`). Three kinds:

* :class:`ExtractUnit` — one shard ``(dataset, model, layers, shard)`` of an extraction: samples in,
  one array per sample and layer out (and the model's energies when its forward pass gives them);
* :class:`EnergyUnit` — the energies of one ``(dataset, model)`` subset, for models whose energy is not
  a by-product of the embedding pass;
* :class:`CallUnit` — a pure function of picklable arguments in the project's own environment (the
  measure stage: a model's cache, a block of model pairs). An argument may be a :class:`Ref` to the
  result of an earlier unit of the same executor (a per-model cache shared by several pair blocks:
  through Ray's object store on a cluster, by the driver locally).

Every unit declares its :class:`Resources` and the model environment it runs in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Resources", "ExtractUnit", "EnergyUnit", "CallUnit", "Ref", "Unit"]


@dataclass(frozen=True)
class Resources:
    """What one unit needs while it runs.

    Attributes
    ----------
    cpus : float
        CPU cores (fractional on Ray; the local executor runs one unit per worker).
    gpus : float
        GPUs (requested only when the model can use one and the study asks for it).
    memory_gb : float, optional
        A hint for the scheduler (Ray's ``memory`` resource); ``None``: no hint.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float | None = None


def _model_key(unit) -> str:
    """Units with the same model key can share one loaded model (same environment, model and options)."""
    return json.dumps([unit.env, unit.model, unit.options], sort_keys=True, default=str)


@dataclass(frozen=True)
class Ref:
    """A placeholder for the result of the unit whose :attr:`key` is ``key`` (resolved by the executor)."""

    key: tuple


@dataclass
class ExtractUnit:
    """Extraction of one shard of one dataset by one model, at one or more layers (one forward pass).

    Attributes
    ----------
    dataset, model : str
    layers : tuple of str
    shard : int
        Shard index (consecutive blocks of ``shard_size`` samples of the dataset).
    samples : list of Sample
        The shard's samples (every view travels; see :mod:`matteralign.execute.wire`).
    options : dict
        JSON-serialisable adapter options (``checkpoint``, ``trust_checkpoint``, ``seed``, ``device``...).
    env : str or None
        Model environment (``None``: the project's own).
    resources : Resources
    batch_size : int or None
        Inputs per forward pass (the adapter's default when ``None``).
    with_energy : bool
        Also return the model's energy of every embedded sample from the same forward pass.
    """

    dataset: str
    model: str
    layers: tuple[str, ...]
    shard: int
    samples: list
    options: dict[str, Any] = field(default_factory=dict)
    env: str | None = None
    resources: Resources = Resources()
    batch_size: int | None = None
    with_energy: bool = False
    kind = "extract"

    @property
    def key(self) -> tuple:
        return ("extract", self.dataset, self.model, self.layers, self.shard)

    model_key = property(lambda self: _model_key(self))

    @property
    def label(self) -> str:
        return f"{self.dataset} · {self.model} · shard {self.shard}"


@dataclass
class EnergyUnit:
    """The model's total energy (eV) of each sample of a ``(dataset, model)`` subset."""

    dataset: str
    model: str
    samples: list
    options: dict[str, Any] = field(default_factory=dict)
    env: str | None = None
    resources: Resources = Resources()
    kind = "energy"

    @property
    def key(self) -> tuple:
        return ("energy", self.dataset, self.model)

    model_key = property(lambda self: _model_key(self))

    @property
    def label(self) -> str:
        return f"{self.dataset} · {self.model} · energies"


@dataclass
class CallUnit:
    """A pure function ``fn(*args)`` in the project's environment (``fn``: ``"module:function"``).

    ``share=True`` keeps the result with the executor (for :class:`Ref` arguments of later units).
    ``threads`` fixes the threads the call uses (compiled kernels and BLAS) whatever the executor, so that
    its numbers do not depend on how many workers share a machine (``None``: the worker's own count).
    """

    key: tuple
    fn: str
    args: tuple = ()
    resources: Resources = Resources()
    share: bool = False
    label: str = ""
    threads: int | None = None
    kind = "call"
    env = None

    @property
    def model_key(self) -> str:
        return json.dumps([None, None, {}])


Unit = ExtractUnit | EnergyUnit | CallUnit
