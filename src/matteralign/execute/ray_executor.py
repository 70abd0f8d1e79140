"""The Ray executor: the same units on a Ray cluster (``pip install matteralign[ray]``).

* **Extraction and energy units** go to *model actors*: each actor is a Ray actor process (the project's
  Python, the same Ray version everywhere) that owns one worker process of the unit's model environment
  (:mod:`matteralign.execute.worker`, the same worker the local executor starts) and keeps the model
  loaded, so a model's shards stream through one loaded instance. Its resource request comes from the
  unit (``num_cpus`` — fractional — and ``num_gpus=1`` only for a GPU model in a study that asks for
  GPUs). A model environment reaches Ray through that worker process rather than through
  ``runtime_env={"py_executable": ...}``: the environments pin other numpy versions (``numpy<2`` for
  MatterGen and EquiformerV2), which cannot load numpy-2 pickles from Ray's object store, and
  ``py_executable`` would need Ray installed in every environment; the worker protocol carries only
  ``.npz`` bytes, so every environment works unchanged on every node.
* **Call units** (the measure stage) are Ray tasks; a per-model cache is a task result that stays in
  Ray's object store and is handed by reference to every pair block that needs it.
* **Faults**: a task whose worker dies is retried by Ray (``max_retries``); an actor that dies (its
  process killed, its node removed) is replaced and the unit runs again on the remaining nodes.

What travels over the network: each unit's samples as ``.npz`` bytes (atoms, strings, grids), each result
as ``.npz`` bytes (features of the shard), the measure stage's arrays and caches through the object store.
The store lives only on the driver's disk: the driver commits every result.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingDependencyError
from .executors import SlotExecutor, WorkerDied, _Slot
from .units import CallUnit, EnergyUnit, ExtractUnit, Ref

__all__ = ["RayExecutor", "ray_options"]


def _ray():
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "the ray executor", extra="ray") from None
    return ray


def ray_options(resources) -> dict[str, Any]:
    """Ray's resource request for a unit's :class:`~matteralign.execute.units.Resources`."""
    out: dict[str, Any] = {"num_cpus": float(resources.cpus), "num_gpus": float(resources.gpus)}
    if resources.memory_gb:
        out["memory"] = int(resources.memory_gb * 2**30)
    return out


def _actor_class():
    ray = _ray()

    @ray.remote(max_restarts=0)
    class ModelActor:
        """Owns one worker process of an environment on its node; runs extraction and energy requests."""

        def __init__(self, env: str | None, threads: int):
            from .executors import _ProcSlot

            self._tmp = Path(tempfile.mkdtemp(prefix="matteralign-ray-"))
            self._n = 0

            def seq():
                self._n += 1
                return self._n

            self._slot = _ProcSlot(env, threads, self._tmp, seq)

        def pid(self) -> int:
            return os.getpid()

        def node_id(self) -> str:
            return ray.get_runtime_context().get_node_id()

        def worker_pid(self) -> int:
            return self._slot.pid

        def run(self, unit, key=None, packed=None):
            given = (tuple(key), packed) if key is not None else None  # the samples, once per shard and node
            fut = self._slot.submit(unit, lambda a: a, given)
            try:
                return fut.result()
            except WorkerDied:  # the actor goes with its worker: the driver replaces both
                os._exit(1)

    return ModelActor


def _run_call(fn: str, threads, *args):
    from .worker import run_call

    return run_call(fn, args, threads=threads)


class _ActorSlot(_Slot):
    def __init__(self, actor_cls, unit, threads: int, packed: Callable[[Any], tuple] | None = None):
        self._packed = packed
        self.env = unit.env
        self.model_key = None
        self.actor = actor_cls.options(**ray_options(unit.resources)).remote(unit.env, threads)
        self.resources = unit.resources
        self.node = self.actor.node_id.remote()  # resolved when the actor is placed
        self.current: cf.Future | None = None

    def submit(self, unit, resolve) -> cf.Future:
        ray = _ray()
        self.model_key = unit.model_key
        out: cf.Future = cf.Future()
        if self._packed is not None and isinstance(unit, (ExtractUnit, EnergyUnit)):
            key, data = self._packed(unit)  # the samples travel once per shard, through the object store
            ref = self.actor.run.remote(dataclasses.replace(unit, samples=[]), key, data)
        else:
            ref = self.actor.run.remote(unit)

        def done(f):
            if out.done():  # cancelled by the driver, or failed as lost with its node
                return
            try:
                out.set_result(f.result())
            except ray.exceptions.RayActorError as exc:
                out.set_exception(WorkerDied(f"actor died: {str(exc).splitlines()[0]}"))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
                out.set_exception(cause)
            except Exception as exc:  # pragma: no cover - e.g. the object was lost with its node
                out.set_exception(WorkerDied(f"{type(exc).__name__}: {exc}"))

        ref.future().add_done_callback(done)
        self.current = out
        return out

    def lose(self, why: str) -> None:
        """Fail the running unit (its node is gone; Ray may take long to say so)."""
        if self.current is not None and not self.current.done():
            try:
                self.current.set_exception(WorkerDied(why))
            except cf.InvalidStateError:  # pragma: no cover - completed meanwhile
                pass

    def close(self, kill: bool = False) -> None:
        try:
            _ray().kill(self.actor)
        except Exception:  # pragma: no cover - already gone
            pass


class RayExecutor(SlotExecutor):
    """Units on a Ray cluster.

    Parameters
    ----------
    address : str, optional
        ``"auto"`` (a running cluster, e.g. after ``ray start --head``), ``"HOST:PORT"``, or ``None``: join
        the cluster Ray is already connected to in this process, else start a local one.
    workers : int, optional
        Model actors at a time (default: the cluster's CPUs divided by a unit's CPUs).
    threads : int, optional
        Threads per model worker (default: 1, with one CPU per unit).
    cpus_per_unit : float
        CPUs each extraction unit asks for (fractional on purpose: on small machines an actor pool that
        takes every CPU starves Ray's other tasks).
    max_retries : int
        Retries of a call unit (Ray task) and of a unit whose actor died.
    init : dict, optional
        Extra keyword arguments for ``ray.init`` when this executor starts Ray.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int | None = None,
                 cpus_per_unit: float = 1.0, max_retries: int = 3, init: dict[str, Any] | None = None):
        ray = _ray()
        self._started = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            kw = dict(init or {})
            kw.setdefault("include_dashboard", False)
            kw.setdefault("log_to_driver", False)
            try:
                ray.init(address=address, **kw)
            except ConnectionError as exc:
                raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
            self._started = True
        self.address = address
        self.cpus_per_unit = float(cpus_per_unit)
        cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        n = int(workers) if workers else max(1, int(cluster_cpus // max(self.cpus_per_unit, 1e-9)))
        super().__init__(n)
        self.max_retries = int(max_retries)
        self.threads = int(threads) if threads else max(1, int(self.cpus_per_unit))
        self._actor_cls = _actor_class()
        self._call = ray.remote(_run_call)
        self._sample_refs: dict[tuple[str, str], Any] = {}

    def describe(self) -> dict[str, Any]:
        ray = _ray()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"executor": "ray", "workers": self.workers, "threads_per_worker": self.threads,
                "cpus_per_unit": self.cpus_per_unit, "address": self.address, "retries": self.retries, "ray": ray.__version__,
                "nodes": len(nodes), "cluster_resources": {k: v for k, v in ray.cluster_resources().items()
                                                           if k in ("CPU", "GPU", "memory")}}

    def _capacity(self) -> int:
        cpus = float(_ray().available_resources().get("CPU", 0.0)) + sum(
            s.resources.cpus for s in self._slots if isinstance(s, _ActorSlot))
        return max(1, min(self.workers, int(cpus // max(self.cpus_per_unit, 1e-9) + 1e-9)))

    def _check_slots(self) -> None:
        """Fail the units of actors whose node is dead, so that they run again elsewhere."""
        ray = _ray()
        import time

        now = time.monotonic()
        if now - getattr(self, "_last_check", 0.0) < 2.0:
            return
        self._last_check = now
        dead = {n["NodeID"] for n in ray.nodes() if not n.get("Alive")}
        if not dead:
            return
        for slot in self._slots:
            if not isinstance(slot, _ActorSlot) or slot.current is None or slot.current.done():
                continue
            ready, _ = ray.wait([slot.node], timeout=0)
            if ready and ray.get(slot.node) in dead:
                slot.lose("its node was removed from the cluster")

    def _can_host(self, slot, unit) -> bool:
        return slot.env == unit.env and getattr(slot, "resources", None) == unit.resources

    def _new_slot(self, unit) -> _Slot:
        if isinstance(unit, CallUnit):  # pragma: no cover - call units run as tasks
            raise AssertionError("call units run as Ray tasks")
        return _ActorSlot(self._actor_cls, self._with_cpus(unit), self.threads, self._packed_samples)

    def _packed_samples(self, unit) -> tuple[tuple[str, str], Any]:
        """``(key, object ref)`` of the unit's packed samples, put into the object store once per shard."""
        from .executors import _Inputs

        key = _Inputs.key(unit)
        ref = self._sample_refs.get(key)
        if ref is None:
            ref = self._sample_refs[key] = _ray().put(_Inputs.pack(unit))
        return key, ref

    def _with_cpus(self, unit):
        import dataclasses

        if unit.resources.cpus != self.cpus_per_unit:
            unit.resources = dataclasses.replace(unit.resources, cpus=self.cpus_per_unit)
        return unit

    def _submit_call(self, unit: CallUnit) -> cf.Future | None:
        args = [self._kept[a.key] if isinstance(a, Ref) else a for a in unit.args]  # refs stay in the store
        opts = ray_options(unit.resources)
        # a call unit runs on its own threads (measure_threads, 1 for analyses): it asks for them whole, so the
        # cluster runs as many at once as it has cores (the model actors that hold CPUs are gone by then)
        opts["num_cpus"] = min(opts["num_cpus"], self._largest_node_cpus())
        ref = self._call.options(max_retries=self.max_retries, **opts).remote(unit.fn, unit.threads, *args)
        out: cf.Future = cf.Future()
        if unit.share:  # the driver keeps the reference; the cache itself stays in Ray's object store
            def ready(f):
                if out.done():
                    return
                try:
                    f.result()
                    out.set_result(ref)
                except Exception as exc:
                    out.set_exception(exc)
        else:
            def ready(f):
                if out.done():
                    return
                try:
                    out.set_result(f.result())
                except Exception as exc:
                    out.set_exception(exc)
        ref.future().add_done_callback(ready)
        return out

    def _largest_node_cpus(self) -> float:
        """The CPUs of the largest live node (a task asking for more could never be placed); asked of Ray once
        per :meth:`run`, not once per call unit."""
        if getattr(self, "_node_cpus", None) is None:
            cpus = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in _ray().nodes() if n.get("Alive")]
            self._node_cpus = max(cpus, default=1.0) or 1.0
        return self._node_cpus

    def run(self, units, on_result, *, progress=None):
        units = list(units)
        self._node_cpus = None  # nodes may have joined or left since the last run
        for u in units:
            if isinstance(u, (ExtractUnit, EnergyUnit)):
                self._with_cpus(u)
        if any(isinstance(u, CallUnit) for u in units):
            # model actors hold their CPUs while alive; the measure stage's tasks need them
            self._reset_slots()
        super().run(units, on_result, progress=progress)

    def actor_pids(self) -> list[int]:
        """Process ids of the live model actors (for fault tests)."""
        ray = _ray()
        return [ray.get(s.actor.pid.remote()) for s in self._slots if isinstance(s, _ActorSlot)]

    def close(self):
        super().close()
        if self._started:
            _ray().shutdown()
