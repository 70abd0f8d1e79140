"""Errors raised by matteralign.

Every failure a user can cause is a :class:`MatterAlignError`. Messages name the input,
the value that was found and what was expected, so that one line is enough to act on.
The CLI prints that line (and a hint); ``--traceback`` shows the stack.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "MatterAlignError",
    "InputError",
    "ConfigError",
    "UnknownNameError",
    "MissingDependencyError",
    "StoreError",
    "ModelError",
    "DatasetError",
    "LockedError",
]


class MatterAlignError(Exception):
    """Base class of every error matteralign raises on bad input or a failed stage."""


class InputError(MatterAlignError, ValueError):
    """An array or parameter has the wrong shape, type, range or content (NaN, inf, ...)."""


class ConfigError(MatterAlignError, ValueError):
    """A study file or option is invalid (unknown key, bad value)."""


class UnknownNameError(MatterAlignError, KeyError):
    """A name (metric, model, dataset, layer) is not registered.

    The message lists close matches and the available names.
    """

    def __init__(self, kind: str, name: str, available: Iterable[str]):
        available = sorted(available)
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(available) if len(available) <= 40 else ", ".join(available[:40]) + ", ..."
        self.kind, self.name, self.available = kind, name, available
        super().__init__(f"unknown {kind} {name!r}.{hint} Available: {listing}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class MissingDependencyError(MatterAlignError, ImportError):
    """An optional package needed for this feature is not installed."""

    def __init__(self, package: str, feature: str, extra: str | None = None):
        how = f"pip install 'matteralign[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package {package!r}, which is not installed. Install it with: {how}")


class StoreError(MatterAlignError):
    """The embedding store is missing, corrupt, foreign or inconsistent."""


class ModelError(MatterAlignError):
    """A model adapter cannot be built or run (missing checkpoint, unsupported input, ...)."""


class DatasetError(MatterAlignError):
    """A dataset cannot be read or built, or is empty."""


class LockedError(MatterAlignError):
    """A folder (a study's output folder, a store while it commits) is held by another process."""
