"""Executors: run units of work and hand each result to the driver's committer as it arrives.

* :class:`InlineExecutor` — in the driver process, one unit after another (tests, debugging, an
  :class:`~matteralign.models.base.Extractor` instance that cannot travel);
* :class:`LocalExecutor` — up to ``workers`` worker processes on this machine (default: the cores this
  process may use), each running :mod:`matteralign.execute.worker` in the Python of the unit's model
  environment (the project's own otherwise), with ``threads`` per process (default 1: the same numbers for any number of workers);
* :class:`~matteralign.execute.ray_executor.RayExecutor` — the same units on a Ray cluster.

The scheduling loop (:class:`SlotExecutor`) is shared by the local and Ray executors: a *slot* runs one
unit at a time and keeps the model it loaded; a free slot takes the next unit of the model it holds
when there is one (so a model's shards stream through one loaded instance), otherwise the first
waiting unit. A slot whose process dies in the middle of a unit is replaced and the unit runs again
(up to ``max_retries`` times); results are committed only by the driver, so a unit that ran twice
is committed once.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError
from .units import CallUnit, EnergyUnit, ExtractUnit, Ref

__all__ = ["Executor", "InlineExecutor", "LocalExecutor", "SlotExecutor", "WorkerDied", "available_cpus",
           "get_executor", "EXECUTORS"]

EXECUTORS = ("local", "ray", "inline")


class WorkerDied(RuntimeError):
    """A worker process ended in the middle of a unit (killed, out of memory, node lost)."""


def available_cpus() -> int:
    """The cores this process may use (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------- requests (files in, files out)
class _Inputs:
    """The sample files of units, written once per ``(dataset, samples)``: every model of a study reads the same
    shards, so a shard's file serves them all (the paper's plan: 59 models share each of 490 shard files)."""

    def __init__(self, tmp: Path):
        self._tmp = tmp
        self._paths: dict[tuple[str, str], Path] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(unit) -> tuple[str, str]:
        """``(dataset, digest of the sample ids)``: units with equal keys read the same samples."""
        import hashlib

        return unit.dataset, hashlib.sha1("\0".join(str(s.id) for s in unit.samples).encode()).hexdigest()

    @staticmethod
    def pack(unit) -> bytes:
        """The unit's samples as the bytes of their ``.npz`` file (what a Ray actor receives once per shard)."""
        import io

        from .wire import write_samples

        buf = io.BytesIO()
        write_samples(unit.samples, buf, name=unit.dataset)
        return buf.getvalue()

    def path(self, unit, given: tuple[tuple[str, str], bytes] | None = None) -> str:
        """The file of the unit's samples, written on first use (from ``given = (key, bytes)`` when the samples
        arrived packed)."""
        key = given[0] if given is not None else self.key(unit)
        with self._lock:
            path = self._paths.get(key)
            if path is None or not path.exists():
                path = self._tmp / f"in-{len(self._paths):06d}-{key[1][:12]}.npz"
                if given is not None:
                    path.write_bytes(given[1])
                else:
                    from .wire import write_samples

                    write_samples(unit.samples, path, name=unit.dataset)
                self._paths[key] = path
        return str(path)


def _request(unit, tmp: Path, seq: int, resolve: Callable[[Any], Any], inputs: _Inputs | None = None,
             given: tuple[tuple[str, str], bytes] | None = None) -> dict[str, Any]:
    """Write the unit's inputs under ``tmp`` (sample files through ``inputs``, shared by the units that read
    the same samples; ``given``: the samples already packed) and return the worker request."""
    base = tmp / f"u{seq:06d}"
    if isinstance(unit, (ExtractUnit, EnergyUnit)):
        src = (inputs or _Inputs(tmp)).path(unit, given)
        if isinstance(unit, ExtractUnit):
            return {"id": seq, "op": "extract", "model": unit.model, "options": unit.options,
                    "layers": list(unit.layers), "batch_size": unit.batch_size, "with_energy": unit.with_energy,
                    "input": src, "output": str(base.with_suffix(".out.npz"))}
        return {"id": seq, "op": "energy", "model": unit.model, "options": unit.options,
                "input": src, "output": str(base.with_suffix(".out.npz"))}
    import pickle

    with open(base.with_suffix(".in.pkl"), "wb") as fh:
        pickle.dump((unit.fn, tuple(resolve(a) for a in unit.args)), fh, protocol=pickle.HIGHEST_PROTOCOL)
    return {"id": seq, "op": "call", "input": str(base.with_suffix(".in.pkl")),
            "output": str(base.with_suffix(".out.pkl")), "threads": unit.threads}


def _read_result(unit, path: str) -> Any:
    """The result object of ``unit`` from its output file (the file is removed)."""
    try:
        if isinstance(unit, ExtractUnit):
            from .wire import unpack_embedding

            return unpack_embedding(path)
        if isinstance(unit, EnergyUnit):
            import numpy as np

            z = np.load(path, allow_pickle=False)
            return {"ids": [str(i) for i in z["ids"].tolist()], "energy": z["energy"]}
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


class Executor:
    """Runs units and hands each result to ``on_result(unit, result)`` in the driver thread."""

    name = "executor"
    workers = 1
    threads: int | None = None

    def run(self, units: Sequence, on_result: Callable[[Any, Any], None], *,
            progress: Callable[[Any], None] | None = None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What ran the units (recorded in the study's provenance)."""
        return {"executor": self.name, "workers": self.workers, "threads_per_worker": self.threads,
                "retries": getattr(self, "retries", 0)}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class InlineExecutor(Executor):
    """Every unit in the driver process, in order (a model instance may be given for extraction units)."""

    name = "inline"

    def __init__(self, extractor=None):
        from .worker import Handler

        self._handler = Handler()
        self._extractor = extractor
        self._kept: dict[tuple, Any] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix="matteralign-inline-"))
        self._inputs = _Inputs(self._tmp)
        self._seq = 0

    def run(self, units, on_result, *, progress=None):
        for unit in units:
            if isinstance(unit, ExtractUnit) and self._extractor is not None:
                from .worker import embed_shard

                ex = self._extractor
                layers = [ex.resolve_layer(layer) for layer in unit.layers]
                ids, feats, skipped, energies = embed_shard(ex, unit.samples, layers, batch_size=unit.batch_size,
                                                            with_energy=unit.with_energy)
                result = {"ids": ids, "arrays": feats, "skipped": skipped, "energies": energies,
                          "provenance": ex.provenance()}
            elif isinstance(unit, CallUnit):
                from .worker import run_call

                result = run_call(unit.fn, tuple(self._resolve(a) for a in unit.args), threads=unit.threads)
                if unit.share:
                    self._kept[unit.key] = result
            else:
                self._seq += 1
                req = _request(unit, self._tmp, self._seq, self._resolve, self._inputs)
                reply = self._handler.handle(req)
                result = _read_result(unit, reply["output"])
            on_result(unit, result)
            if progress:
                progress(unit)

    def _resolve(self, a):
        return self._kept[a.key] if isinstance(a, Ref) else a

    def close(self):
        shutil.rmtree(self._tmp, ignore_errors=True)


# ---------------------------------------------------------------------- slots and the shared scheduling loop
class _Slot:
    """Runs one unit at a time; knows which environment and model it holds."""

    env: str | None = None
    model_key: str | None = None

    def submit(self, unit, request_maker) -> cf.Future:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self, kill: bool = False) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class _Queue:
    """The units still to run: one FIFO per model (extraction and energy units) and the call units in order.

    Taking the next unit costs O(models + waiting call units), not O(units): the paper's plan has ~29,000
    shards over 295 (dataset, model) jobs.
    """

    def __init__(self, units):
        from collections import OrderedDict, deque

        self.by_model: OrderedDict[str, deque] = OrderedDict()
        self.calls: list[CallUnit] = []
        self._deque = deque
        for u in units:
            self._add(u)

    def _add(self, unit, front: bool = False):
        if isinstance(unit, CallUnit):
            (self.calls.insert(0, unit) if front else self.calls.append(unit))
            return
        q = self.by_model.setdefault(unit.model_key, self._deque())
        (q.appendleft if front else q.append)(unit)

    def put_back(self, unit) -> None:
        """A unit whose worker died runs again first."""
        self._add(unit, front=True)

    def __bool__(self) -> bool:
        return bool(self.calls) or any(self.by_model.values())

    def ready_calls(self, ready) -> list[CallUnit]:
        return [u for u in self.calls if ready(u)]

    def take(self, unit) -> None:
        self.calls.remove(unit)

    def _pop(self, key: str):
        q = self.by_model[key]
        unit = q.popleft()
        if not q:
            del self.by_model[key]
        return unit

    def pick(self, slot, held: set, ready, can_host):
        """The next unit for ``slot``: more of the model it holds; else a ready call unit it can run; else
        the first model no other slot holds (so models load in parallel, each once); else the model with
        the most units left (its shards are then shared). ``None`` when only waiting call units remain."""
        if slot is not None:
            q = self.by_model.get(slot.model_key)
            if q and can_host(slot, q[0]):
                return self._pop(slot.model_key)
            for u in self.calls:
                if can_host(slot, u) and ready(u):
                    self.calls.remove(u)
                    return u
        for u in self.calls:
            if ready(u):
                self.calls.remove(u)
                return u
        if not self.by_model:
            return None
        for key in self.by_model:
            if key not in held:
                return self._pop(key)
        return self._pop(max(self.by_model, key=lambda k: len(self.by_model[k])))


class SlotExecutor(Executor):
    """The scheduling loop over slots (local processes or Ray actors); subclasses make the slots."""

    max_retries = 3

    def __init__(self, workers: int):
        self.workers = int(workers)
        self._slots: list[_Slot | None] = [None] * self.workers
        self._kept: dict[tuple, Any] = {}
        #: Units that ran again because their worker died (for provenance and fault tests).
        self.retries = 0

    # subclasses
    def _new_slot(self, unit) -> _Slot:  # pragma: no cover - abstract
        raise NotImplementedError

    def _can_host(self, slot: _Slot, unit) -> bool:
        """Whether ``slot`` can run ``unit`` without being replaced (same environment)."""
        return slot.env == unit.env

    def _submit_call(self, unit) -> cf.Future | None:
        """Executors that run call units outside the slots (Ray tasks) return a future here."""
        return None

    def _capacity(self) -> int:
        """How many slots can be alive at once now (a cluster may lose nodes)."""
        return self.workers

    def _check_slots(self) -> None:
        """Called while waiting: fail the unit of a slot known to be lost (Ray: its node is dead)."""

    def _resolve(self, a):
        return self._kept[a.key] if isinstance(a, Ref) else a

    def _ready(self, unit) -> bool:
        """Whether every :class:`Ref` argument of ``unit`` has its result."""
        return all(a.key in self._kept for a in getattr(unit, "args", ()) if isinstance(a, Ref))

    def run(self, units, on_result, *, progress=None):
        queue = _Queue(units)
        attempts: dict[tuple, int] = {}
        running: dict[cf.Future, tuple[int | None, Any]] = {}

        def dispatch():
            # call units that run outside the slots (Ray tasks) go as soon as their inputs exist
            for unit in queue.ready_calls(self._ready):
                fut = self._submit_call(unit)
                if fut is None:
                    break  # this executor runs call units in its slots
                queue.take(unit)
                running[fut] = (None, unit)
            busy = {i for i, _u in running.values() if i is not None}
            free = [i for i in range(self.workers) if i not in busy]
            if not free or not queue:
                return
            capacity = self._capacity()
            for i in free:
                if not queue:
                    break
                if self._slots[i] is None and sum(x is not None for x in self._slots) >= capacity:
                    continue  # the cluster shrank: wait for a live slot
                held = {s.model_key for j, s in enumerate(self._slots) if s is not None and j != i}
                unit = queue.pick(self._slots[i], held, self._ready, self._can_host)
                if unit is None:
                    break  # only call units waiting for results remain
                slot = self._slots[i]
                if slot is None or not self._can_host(slot, unit):
                    if slot is not None:
                        slot.close()
                    slot = self._slots[i] = self._new_slot(unit)
                running[slot.submit(unit, self._resolve)] = (i, unit)

        try:
            while queue or running:
                dispatch()
                if not running:
                    missing = sorted({str(a.key) for u in queue.calls for a in u.args if isinstance(a, Ref)
                                      and a.key not in self._kept})
                    raise ModelError(f"units wait for results no unit produces: {missing}")
                done, _ = cf.wait(list(running), timeout=1.0, return_when=cf.FIRST_COMPLETED)
                if not done:
                    self._check_slots()
                    continue
                landed = []
                for fut in done:
                    i, unit = running.pop(fut)
                    try:
                        result = fut.result()
                    except WorkerDied as exc:
                        if i is not None and self._slots[i] is not None:
                            self._slots[i].close()
                            self._slots[i] = None
                        n = attempts[unit.key] = attempts.get(unit.key, 0) + 1
                        if n > self.max_retries:
                            raise ModelError(f"{unit.label}: the worker died {n} times running this unit "
                                             f"(last: {exc}); giving up") from None
                        self.retries += 1
                        queue.put_back(unit)
                        continue
                    if isinstance(unit, CallUnit) and unit.share:
                        self._kept[unit.key] = result
                    landed.append((unit, result))
                if landed:
                    dispatch()  # free slots take their next unit before the driver commits
                for unit, result in landed:
                    on_result(unit, result)
                    if progress:
                        progress(unit)
        except BaseException:
            for fut in running:
                fut.cancel()
            self._reset_slots(kill=True)  # Ctrl-C or an error: stop the workers now; nothing half-written
            raise

    def _reset_slots(self, kill: bool = False):
        for i, s in enumerate(self._slots):
            if s is not None:
                s.close(kill=kill)
            self._slots[i] = None

    def close(self):
        self._reset_slots()


# ---------------------------------------------------------------------- the local executor
class _ProcSlot(_Slot):
    """A worker process (``python -m matteralign.execute.worker``) of one environment."""

    def __init__(self, env: str | None, threads: int, tmp: Path, seq: Callable[[], int],
                 inputs: _Inputs | None = None):
        from . import placement

        self.env = env
        self.model_key = None
        self._tmp, self._seq = tmp, seq
        self._inputs = inputs or _Inputs(tmp)
        python = placement.python_for(env)
        child_env = placement.worker_environ(env, threads)
        self._log = open(tmp / f"worker-{id(self)}.log", "w+")
        self.proc = subprocess.Popen([str(python), "-m", "matteralign.execute.worker"], env=child_env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     bufsize=1, start_new_session=True)  # Ctrl-C reaches the driver only
        # a worker ends when its stdin closes: the driver's exit (even a SIGKILL) ends its workers
        self._lock = threading.Lock()
        self._futures: dict[int, tuple[cf.Future, Any]] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._lock:
                fut, unit = self._futures.pop(reply.get("id"), (None, None))
            if fut is None:
                continue
            if fut.done():  # cancelled by the driver (an interrupted run)
                continue
            if reply.get("ok"):
                try:
                    fut.set_result(_read_result(unit, reply["output"]))
                except Exception as exc:  # a result file that cannot be read: the unit runs again
                    fut.set_exception(WorkerDied(f"unreadable result: {exc}"))
            else:
                from .worker import rebuild_error

                fut.set_exception(rebuild_error(reply["error"]))
        self.proc.wait()
        with self._lock:
            left, self._futures = list(self._futures.values()), {}
        for fut, _unit in left:
            if not fut.done():
                fut.set_exception(WorkerDied(f"worker process {self.proc.pid} exited with code {self.proc.returncode}; "
                                         f"log: {self._log_tail()}"))

    def _log_tail(self) -> str:
        try:
            self._log.flush()
            return Path(self._log.name).read_text()[-1500:].strip() or "(empty)"
        except OSError:  # pragma: no cover
            return "(unreadable)"

    def submit(self, unit, resolve, given: tuple[tuple[str, str], bytes] | None = None) -> cf.Future:
        fut: cf.Future = cf.Future()
        seq = self._seq()
        req = _request(unit, self._tmp, seq, resolve, self._inputs, given)
        with self._lock:
            self._futures[seq] = (fut, unit)
        if not isinstance(unit, CallUnit):
            self.model_key = unit.model_key
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader thread fails the future when it sees the process gone
        return fut

    def close(self, kill: bool = False):
        if kill and self.proc.poll() is None:
            self.proc.kill()
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class LocalExecutor(SlotExecutor):
    """Worker processes on this machine.

    Parameters
    ----------
    workers : int, optional
        Units at a time (default: the cores this process may use, :func:`available_cpus`).
    threads : int, optional
        Threads per worker for torch, BLAS, OpenMP and numba (default 1: with ``workers`` = cores no core is
        oversubscribed, and every worker count gives the same numbers; some models' CPU kernels round
        differently with another thread count).
    """

    name = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None):
        cpus = available_cpus()
        workers = cpus if workers is None else int(workers)
        if workers < 1:
            raise ConfigError(f"execution.workers must be a positive integer; got {workers}")
        super().__init__(workers)
        # one thread per worker unless asked: the numbers then do not depend on the number of workers (ANI-1x and
        # Orb round differently with 2 threads than with 1); with workers = cores no core is oversubscribed
        self.threads = int(threads) if threads else 1
        self._tmp = Path(tempfile.mkdtemp(prefix="matteralign-exec-"))
        self._inputs = _Inputs(self._tmp)
        self._counter = 0
        self._counter_lock = threading.Lock()

    def _next(self) -> int:
        with self._counter_lock:
            self._counter += 1
            return self._counter

    def _new_slot(self, unit) -> _Slot:
        return _ProcSlot(unit.env, self.threads, self._tmp, self._next, self._inputs)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for fault tests)."""
        return [s.pid for s in self._slots if isinstance(s, _ProcSlot) and s.proc.poll() is None]

    def close(self):
        super().close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def get_executor(name: str = "local", *, workers: int | None = None, threads: int | None = None,
                 address: str | None = None, **options) -> Executor:
    """The executor named ``name`` (``"local"``, ``"ray"`` or ``"inline"``).

    Parameters
    ----------
    name : str
    workers : int, optional
        Units at a time (local: worker processes; Ray: model actors). Default: every available core.
    threads : int, optional
        Threads per worker (default 1).
    address : str, optional
        Ray only: ``"auto"`` (a running cluster), ``"HOST:PORT"``, or ``None`` (start a local Ray).
    **options
        Ray only: passed to :class:`~matteralign.execute.ray_executor.RayExecutor`.
    """
    if name == "local":
        return LocalExecutor(workers=workers, threads=threads)
    if name == "inline":
        return InlineExecutor()
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(address=address, workers=workers, threads=threads, **options)
    from ..errors import UnknownNameError

    raise UnknownNameError("executor", str(name), EXECUTORS)

