"""Compiled inner loops (numba), built on first use and cached on disk; numpy routes remain when absent.

numba comes with the ``analysis`` extra. Each kernel is declared once with :func:`kernel`; calling the
returned getter compiles it the first time (``cache=True`` keeps the machine code next to the module,
so later processes load it in milliseconds) and returns ``False`` when numba is not installed, so callers
fall back to their numpy route. Importing numba costs about half a second per process, so a getter given
the size of the job (``work``, in inner-loop steps) answers ``False`` for small jobs while numba is not yet
imported; :func:`warm` imports it up front for callers with much work ahead (:func:`pairwise`).

Kernels are compiled serial and release the GIL (``nogil=True``); :func:`run_rows` spreads their rows over a
small pool of Python threads. numba's own OpenMP pool is not used: its idle workers spin, and the FAISS
wheel brings a second OpenMP runtime whose workers then wait for cores (``pairwise`` at N = 20,000 ran
about 5 % slower so). Idle Python threads sleep on a lock.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["kernel", "warm", "run_rows", "pool", "n_threads"]

#: Below this many inner-loop steps a job runs its numpy route unless numba is already imported.
IMPORT_WORTH = 1e8


def warm() -> bool:
    """Import numba now (when installed), so that every later job uses the compiled kernels."""
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba comes with the analysis extra
        return False
    return True


def kernel(build: Callable[[Any], Callable]) -> Callable[..., Callable | bool]:
    """Wrap ``build(numba) -> compiled function`` in a memoised getter ``get(work=None)``.

    ``get`` returns the compiled function, or ``False`` without numba, or ``False`` when ``work`` is given,
    is below :data:`IMPORT_WORTH` and numba has not been imported yet in this process.
    """
    slot: list = []

    def get(work: float | None = None) -> Callable | bool:
        if not slot:
            if work is not None and work < IMPORT_WORTH and "numba" not in sys.modules:
                return False
            try:
                import numba
            except ImportError:  # pragma: no cover - numba comes with the analysis extra
                slot.append(False)
            else:
                slot.append(build(numba))
        return slot[0]

    return get


def n_threads() -> int:
    """Worker threads for compiled kernels: ``MATTERALIGN_THREADS`` or the cores this process may use."""
    value = os.environ.get("MATTERALIGN_THREADS")
    if value:
        return max(1, int(value))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_POOL: list = []  # [(threads, ThreadPoolExecutor)], created on first use


def pool():
    """The shared thread pool of the compiled kernels (``n_threads()`` workers, created once)."""
    from concurrent.futures import ThreadPoolExecutor

    t = n_threads()
    if not _POOL or _POOL[0][0] != t:
        if _POOL:
            _POOL.pop()[1].shutdown(wait=False)
        _POOL.append((t, ThreadPoolExecutor(max_workers=t, thread_name_prefix="matteralign")))
    return _POOL[0][1]


def run_rows(fn: Callable, n: int, *args, chunks_per_thread: int = 4) -> None:
    """Call ``fn(lo, hi, *args)`` over ``[0, n)`` in contiguous chunks on :func:`pool` and wait for all.

    ``fn`` is a compiled kernel with ``nogil=True`` that writes rows ``lo:hi`` of its outputs only; a few
    chunks per thread even out rows of uneven cost. One thread (or a tiny ``n``) runs in the caller.
    """
    t = n_threads()
    parts = min(n, t * chunks_per_thread)
    if t == 1 or parts <= 1:
        fn(0, n, *args)
        return
    bounds = [n * p // parts for p in range(parts + 1)]
    futures = [pool().submit(fn, lo, hi, *args) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    for f in futures:
        f.result()
