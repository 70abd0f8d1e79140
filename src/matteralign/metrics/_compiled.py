"""Compiled inner loops (numba), built on first use and cached on disk; numpy routes remain when absent.

numba comes with the ``analysis`` extra. Each kernel is declared once with :func:`kernel`; calling the
returned getter compiles it the first time (``cache=True`` keeps the machine code next to the module,
so later processes load it in milliseconds) and returns ``False`` when numba is not installed, so callers
fall back to their numpy route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["kernel"]


def kernel(build: Callable[[Any], Callable]) -> Callable[[], Callable | bool]:
    """Wrap ``build(numba) -> compiled function`` in a memoised getter (``False`` without numba)."""
    slot: list = []

    def get() -> Callable | bool:
        if not slot:
            try:
                import numba
            except ImportError:  # pragma: no cover - numba comes with the analysis extra
                slot.append(False)
            else:
                slot.append(build(numba))
        return slot[0]

    return get
