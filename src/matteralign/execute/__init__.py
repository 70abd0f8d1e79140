"""The execution layer: plan → run units of work → commit to the store.

Every stage of a study is planned as units of work (:mod:`~matteralign.execute.units`): an extraction
shard, an energy subset, a model's cache, a block of model pairs. Each unit declares its resources and
its model environment (:mod:`~matteralign.execute.placement` decides where a model runs). An executor
runs them — ``local`` worker processes on every core by default, ``ray`` on a cluster, ``inline`` in
this process — and hands each result back to the driver, whose one committer
(:mod:`~matteralign.execute.commit`) writes the store. Executors never write the store, so the machines
of a cluster need no shared filesystem.

>>> from matteralign.execute import extract, get_executor
>>> extract("runs/store", dataset, "chgnet-0.3.0")                  # doctest: +SKIP
>>> with get_executor("ray", address="auto") as ex:                  # doctest: +SKIP
...     extract("runs/store", dataset, "mace-mp", executor=ex, options={"checkpoint": "mace.model"})
"""

from __future__ import annotations

from .executors import EXECUTORS, Executor, InlineExecutor, LocalExecutor, available_cpus, get_executor
from .extraction import MAX_ATOM_FEATURES, extract, plan_extraction, resources_for
from .units import CallUnit, EnergyUnit, ExtractUnit, Ref, Resources

__all__ = [
    "EXECUTORS",
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "available_cpus",
    "get_executor",
    "extract",
    "plan_extraction",
    "resources_for",
    "MAX_ATOM_FEATURES",
    "ExtractUnit",
    "EnergyUnit",
    "CallUnit",
    "Ref",
    "Resources",
]
