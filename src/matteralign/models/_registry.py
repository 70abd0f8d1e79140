"""The model registry: names → how to build an :class:`~matteralign.models.base.Extractor`.

Registering a model imports nothing heavy: a :class:`ModelSpec` names its factory as a
``"module:attribute"`` string, the packages it needs, and static metadata (family, modality,
layers), so ``matteralign list models`` can describe every model without loading one.

Built-in adapters live in the modules of :mod:`matteralign.models` (every public module is
imported on first use of the registry, so each module must keep heavy imports inside its
functions) and call :func:`register` at import time::

    from ._registry import ModelSpec, register

    register(ModelSpec(name="soap", factory=f"{__name__}:SoapExtractor", family="descriptor",
                       modality="atoms", layers=("soap",), default_layer="soap", requires=("dscribe",)))

Third parties register through the entry-point group ``matteralign.models``; the entry point
names a :class:`ModelSpec`, a list of them, or a callable returning either.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, MissingDependencyError, ModelError, UnknownNameError
from .base import MODALITIES

__all__ = ["ModelSpec", "MODELS", "register", "load", "names", "info", "get_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model, and what it is.

    Attributes
    ----------
    name : str
        Registry key, lowercase (``"chgnet-0.3.0"``).
    factory : str or callable
        ``"package.module:attribute"`` (imported on :func:`load`) or a callable; called as
        ``factory(**kwargs, **options)`` and returning an Extractor.
    family, modality : str
        As on the Extractor (``modality`` is one of :data:`~matteralign.models.base.MODALITIES`).
    layers : tuple of str
        Layer names, the default first.
    default_layer : str
    kwargs : mapping
        Fixed keyword arguments for the factory (e.g. which bundled checkpoint).
    requires : tuple of str
        Importable top-level module names needed to run (checked without importing them).
    requires_checkpoint : bool
        The model needs ``checkpoint=PATH`` (weights not bundled).
    check : callable, optional
        ``check() -> str | None``: a cheap extra availability test (e.g. the weights file exists);
        returns the reason it cannot run, or ``None``.
    description : str
        One line for ``matteralign list models``.
    env : str, optional
        The model environment it runs in (:mod:`matteralign.envs`; ``None``: the main one).
        Extraction elsewhere goes through :func:`matteralign.envs.extract_in_env`.
    """

    name: str
    factory: str | Callable[..., Any]
    family: str
    modality: str
    layers: tuple[str, ...]
    default_layer: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    requires_checkpoint: bool = False
    check: Callable[[], str | None] | None = None
    description: str = ""
    env: str | None = None

    def __post_init__(self):
        if self.name != self.name.lower() or not self.name:
            raise InputError(f"model names are lowercase and non-empty; got {self.name!r}")
        if self.modality not in MODALITIES:
            raise InputError(f"model {self.name!r}: modality must be one of {MODALITIES}; got {self.modality!r}")
        if self.default_layer not in self.layers:
            raise InputError(f"model {self.name!r}: default layer {self.default_layer!r} is not in {self.layers}")

    def unavailable_reason(self) -> str | None:
        """Why this model cannot run here (``None`` when it can), without importing heavy packages."""
        if self.env:
            from .. import envs

            if envs.current_family() != self.env:
                spec = envs.FAMILIES.get(self.env)
                if spec is not None and spec.unavailable:
                    return f"needs env {self.env} (torch {spec.torch}): not built here"
                if not envs.exists(self.env):
                    return f"needs env {self.env}: `matteralign env create {self.env}`"
                return "needs a checkpoint (checkpoint=PATH)" if self.requires_checkpoint else None
        for mod in self.requires:
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return f"package {mod!r} is not installed"
        if self.check is not None:
            reason = self.check()
            if reason:
                return reason
        if self.requires_checkpoint:
            return "needs a local checkpoint (checkpoint=PATH)"
        return None


#: Every registered model, by name (filled lazily: use :func:`names`/:func:`get_spec`).
MODELS: dict[str, ModelSpec] = {}

_discovered = False


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to :data:`MODELS` and return it."""
    if not isinstance(spec, ModelSpec):
        raise InputError(f"register expects a ModelSpec; got {type(spec).__name__}")
    if spec.name in MODELS and not replace and MODELS[spec.name] != spec:
        raise InputError(f"a model named {spec.name!r} is already registered; pass replace=True to override")
    MODELS[spec.name] = spec
    return spec


def _discover() -> None:
    """Import every public module of :mod:`matteralign.models`, then the entry points (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    pkg = importlib.import_module("matteralign.models")
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("_") or mod.name == "base":
            continue
        importlib.import_module(f"matteralign.models.{mod.name}")
    from importlib.metadata import entry_points

    for ep in entry_points(group="matteralign.models"):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break the registry
            import warnings

            warnings.warn(f"matteralign.models entry point {ep.name!r} failed to load: {exc}", stacklevel=2)
            continue
        if callable(obj) and not isinstance(obj, ModelSpec):
            obj = obj()
        for spec in obj if isinstance(obj, (list, tuple)) else [obj]:
            if isinstance(spec, ModelSpec) and spec.name not in MODELS:
                register(spec)


def names() -> list[str]:
    """Sorted names of every registered model."""
    _discover()
    return sorted(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name`` (:class:`UnknownNameError` with close matches)."""
    _discover()
    if not isinstance(name, str) or name not in MODELS:
        raise UnknownNameError("model", str(name), MODELS)
    return MODELS[name]


def _resolve_factory(spec: ModelSpec) -> Callable[..., Any]:
    if callable(spec.factory):
        return spec.factory
    module, _, attr = spec.factory.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except AttributeError:
        raise ModelError(f"model {spec.name!r}: factory {spec.factory!r} does not exist") from None


def load(name: str, **options: Any):
    """Build the extractor registered under ``name``.

    Parameters
    ----------
    name : str
        A registered model name (see :func:`names`).
    **options
        Passed to the adapter (``device=``, ``seed=``, ``num_threads=``, ``batch_size=``,
        ``checkpoint=`` for hub models, ...).

    Returns
    -------
    Extractor

    Raises
    ------
    UnknownNameError
        ``name`` is not registered (the message lists close matches).
    MissingDependencyError
        A package the model needs is not installed.
    ModelError
        The model cannot be built (e.g. a checkpoint path that does not exist).
    """
    spec = get_spec(name)
    if spec.env:
        from .. import envs

        envs.require_env(spec.env, name)
    for mod in spec.requires:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingDependencyError(mod, f"model {name!r}", extra="models")
    factory = _resolve_factory(spec)
    clash = set(spec.kwargs) & set(options)
    if clash:
        raise InputError(f"model {name!r} fixes the options {sorted(clash)}; they cannot be overridden")
    return factory(**spec.kwargs, **options)


def info() -> list[dict[str, Any]]:
    """One dict per registered model: name, family, modality, layers, default layer, availability.

    Returns
    -------
    list of dict
        Keys ``name``, ``family``, ``modality``, ``layers`` (list), ``default_layer``,
        ``requires_checkpoint``, ``available`` (bool), ``reason`` (str or None), ``description``,
        ``env`` (the model environment it runs in, or None).
    """
    rows = []
    for n in names():
        spec = MODELS[n]
        reason = spec.unavailable_reason()
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "modality": spec.modality,
                "layers": list(spec.layers),
                "default_layer": spec.default_layer,
                "requires_checkpoint": spec.requires_checkpoint,
                "available": reason is None,
                "reason": reason,
                "description": spec.description,
                "env": spec.env,
            }
        )
    return rows
