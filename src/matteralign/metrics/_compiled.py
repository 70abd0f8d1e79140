"""Compiled inner loops (numba), built on first use and cached on disk; numpy routes remain when absent.

numba comes with the ``analysis`` extra. Each kernel is declared once with :func:`kernel`; calling the
returned getter compiles it the first time (``cache=True`` keeps the machine code next to the module,
so later processes load it in milliseconds) and returns ``False`` when numba is not installed, so callers
fall back to their numpy route. Importing numba costs about half a second per process, so a getter given
the size of the job (``work``, in inner-loop steps) answers ``False`` for small jobs while numba is not yet
imported; :func:`warm` imports it up front for callers with much work ahead (:func:`pairwise`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["kernel", "warm"]

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
