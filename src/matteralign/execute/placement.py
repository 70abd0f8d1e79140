"""Where a model runs: the one place that decides between the project's Python and a model environment's.

A model whose :class:`~matteralign.models.ModelSpec` names an ``env`` runs in that environment's Python
(:mod:`matteralign.envs` builds them); every other model runs in the project's own. Executors start their
workers through :func:`python_for` and :func:`worker_environ`; ``matteralign list models`` and study
validation ask :func:`unavailable_reason`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ModelError

__all__ = ["env_of", "python_for", "worker_environ", "unavailable_reason", "model_info", "check_runnable"]

#: Thread-count variables set in every worker (torch reads OMP_NUM_THREADS; BLAS and numba their own).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "MATTERALIGN_THREADS")


def env_of(model: str) -> str | None:
    """The environment ``model`` runs in from this Python (``None``: this Python)."""
    from .. import envs
    from ..models import get_spec

    env = get_spec(model).env
    return None if not env or envs.current_family() == env else env


def python_for(env: str | None) -> Path:
    """The interpreter of ``env`` (this Python for ``None``); a clear error when the env is not built."""
    if env is None:
        return Path(sys.executable)
    from .. import envs

    spec = envs.get_env_spec(env)
    if spec.unavailable:
        raise ModelError(f"model environment {env!r} is not built here: {spec.unavailable}")
    if not envs.exists(env):
        raise ModelError(f"the {env!r} model environment does not exist (looked in {envs.env_path(env)}). "
                         f"Create it with `matteralign env create {env}`.")
    return envs.python_of(env)


def worker_environ(env: str | None, threads: int | None) -> dict[str, str]:
    """The process environment of a worker: the checkout on ``PYTHONPATH``, the env's name, thread counts."""
    out = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # .../src: the worker runs the same code as the driver
    out["PYTHONPATH"] = src + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    out.pop("PYTHONHOME", None)
    if env is not None:
        out["MATTERALIGN_ENV"] = env
        out.pop("VIRTUAL_ENV", None)
    if threads is not None:
        for var in THREAD_VARS:
            out[var] = str(int(threads))
    return out


def unavailable_reason(name: str, *, checkpoint_given: bool = False) -> str | None:
    """Why model ``name`` cannot run from here (``None`` when it can).

    Combines the registry's own checks (packages, bundled weights, checkpoint) with the state of the
    model's environment. ``checkpoint_given``: the caller supplies the checkpoint.
    """
    from .. import envs
    from ..models import get_spec
    from ..models._registry import NEEDS_CHECKPOINT

    spec = get_spec(name)
    env = env_of(name)
    if env is not None:
        fam = envs.FAMILIES.get(env)
        if fam is not None and fam.unavailable:
            return f"needs env {env} (torch {fam.torch}): not built here"
        if not envs.exists(env):
            return f"needs env {env}: `matteralign env create {env}`"
        if spec.requires_checkpoint and not checkpoint_given:
            return "needs a checkpoint (checkpoint=PATH)"
        return None
    reason = spec.unavailable_reason()
    if checkpoint_given and reason == NEEDS_CHECKPOINT:  # only the checkpoint was missing (not e.g. Geom2Vec's
        return None  # reason, which mentions checkpoints too)
    return reason


def check_runnable(name: str, *, checkpoint_given: bool = False) -> None:
    """Raise :class:`ModelError` when model ``name`` cannot run from here."""
    reason = unavailable_reason(name, checkpoint_given=checkpoint_given)
    if reason:
        raise ModelError(f"model {name!r} cannot run here: {reason}")


def model_info() -> list[dict[str, Any]]:
    """:func:`matteralign.models.info` with ``available``/``reason`` that know the model environments."""
    from ..models import info

    rows = info()
    for row in rows:
        row["reason"] = unavailable_reason(row["name"])
        row["available"] = row["reason"] is None
    return rows
