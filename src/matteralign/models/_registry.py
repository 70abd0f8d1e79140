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

import difflib
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, MissingDependencyError, ModelError, UnknownNameError
from .base import MODALITIES

__all__ = ["ModelSpec", "LayerInfo", "MODELS", "LABEL_SEP", "register", "load", "names", "info", "get_spec",
           "expand_layers"]


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a model, as listed in forward order.

    Attributes
    ----------
    name : str
        The layer name ``embed`` accepts.
    depth : int
        Index of the module along the forward computation (0 nearest the input). Views of the same module
        (e.g. SevenNet's ``last_block.equivariant`` and its norms, MiniLM's ``sentence`` output) share it.
    width : int or None
        Features per atom (atoms models) or per string; ``None`` where it depends on the checkpoint.
    alias_of : str or None
        The layer this one repeats exactly (same tensor under another name), else ``None``;
        ``layers = "all"`` leaves aliases out.
    """

    name: str
    depth: int
    width: int | None = None
    alias_of: str | None = None


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
        Layer names in forward order (nearest the input first).
    default_layer : str
        The layer used when none is asked for (by convention the representation entering the readout).
    depths : tuple of int
        Depth index of each layer (see :class:`LayerInfo`); empty: the position in ``layers``.
    widths : tuple of int or None
        Width of each layer; empty: unknown until the model runs.
    aliases : mapping of str to str
        Layer -> the layer it repeats exactly (left out of ``layers = "all"``).
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
        The model environment it runs in (:mod:`matteralign.envs`; ``None``: the main one). Where a
        model runs is decided in one place, :mod:`matteralign.execute.placement`.
    kind : str
        What the model is, for the analyses: ``"mlip"``, ``"descriptor"``, ``"language"``, ``"control"``,
        ``"weather"``, ``"generative"``, ... (``""``: derived from nothing; analyses show it as is).
    embedding_type : str
        Type of the default layer's representation: ``"invariant"``, ``"equivariant"``, ``"vanilla"``,
        ``"descriptor"``, ``"text"``, ``"grid"``, ``"generative"``, ``"random"``.
    layer_types : mapping of str to str
        Layers whose embedding type differs from ``embedding_type`` (e.g. an equivariant block).
    control : bool
        A control (random features, a re-initialised architecture): not a trained model.
    random_init_of : str, optional
        For a re-initialised architecture: the trained model whose architecture it shares (trained vs
        random-weights comparisons).
    views : tuple of str or None
        The sample views the model reads; ``None``: its ``modality``; ``()``: none (it reads only the
        sample id, like the ``random`` control, and runs on every dataset).
    needs_views : tuple of str
        Views a sample must carry as well for the model to read it: ``("sequence",)`` for a structure model
        of proteins (a protein chain carries its sequence beside its atoms; a molecule or crystal does not),
        so a study does not run it on a dataset none of whose samples it can read.
    properties : tuple of str
        What the model predicts besides features (ASE-style ``implemented_properties``): ``("energy",)``
        for a model with ``predict_energy``.
    energy_in_forward : bool
        The embedding pass also gives the energy (``embed_with_energy``): energies come from extraction.
    gpu : bool
        The model can run on a GPU (a unit asks for one only when the study asks for GPUs too).
    memory_gb : float, optional
        Memory hint per worker for schedulers.
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
    depths: tuple[int, ...] = ()
    widths: tuple[int | None, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    kind: str = ""
    embedding_type: str = "vanilla"
    layer_types: Mapping[str, str] = field(default_factory=dict)
    control: bool = False
    random_init_of: str | None = None
    views: tuple[str, ...] | None = None
    needs_views: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()
    energy_in_forward: bool = False
    gpu: bool = False
    memory_gb: float | None = None

    def __post_init__(self):
        if self.name != self.name.lower() or not self.name:
            raise InputError(f"model names are lowercase and non-empty; got {self.name!r}")
        if self.modality not in MODALITIES:
            raise InputError(f"model {self.name!r}: modality must be one of {MODALITIES}; got {self.modality!r}")
        if self.default_layer not in self.layers:
            raise InputError(f"model {self.name!r}: default layer {self.default_layer!r} is not in {self.layers}")
        if len(set(self.layers)) != len(self.layers):
            raise InputError(f"model {self.name!r}: a layer is listed twice in {self.layers}")
        for what, values in (("depths", self.depths), ("widths", self.widths)):
            if values and len(values) != len(self.layers):
                raise InputError(f"model {self.name!r}: {len(values)} {what} for {len(self.layers)} layers")
        if self.depths and any(b < a for a, b in zip(self.depths, self.depths[1:], strict=False)):
            raise InputError(f"model {self.name!r}: layers must be listed in forward order; depths {self.depths}")
        bad = {k: v for k, v in self.aliases.items() if k not in self.layers or v not in self.layers or k == v}
        if bad:
            raise InputError(f"model {self.name!r}: aliases {bad} must map one listed layer to another")

    def reads(self) -> tuple[str, ...]:
        """The sample views this model reads (``()``: none, it runs on every dataset)."""
        return (self.modality,) if self.views is None else tuple(self.views)

    def reads_sample(self, sample) -> bool:
        """Whether a sample carries a view this model reads (and every one of ``needs_views``)."""
        views = self.reads()
        return (not views or any(sample.has(v) for v in views)) and all(sample.has(v) for v in self.needs_views)

    def embedding_type_of(self, layer: str) -> str:
        """The embedding type of ``layer`` (``"random"`` for every layer of a control)."""
        if self.control:
            return "random"
        return self.layer_types.get(layer, self.embedding_type)

    def layer_info(self) -> list[LayerInfo]:
        """The layers in forward order with their depth index, width and alias (see :class:`LayerInfo`)."""
        depths = self.depths or tuple(range(len(self.layers)))
        widths = self.widths or (None,) * len(self.layers)
        return [LayerInfo(n, int(d), w, self.aliases.get(n))
                for n, d, w in zip(self.layers, depths, widths, strict=True)]

    def unavailable_reason(self) -> str | None:
        """Why this model cannot run here (``None`` when it can), without importing heavy packages."""
        if self.env and _current_env() != self.env:
            # the registry is plain data: whether that environment is built is known to
            # matteralign.execute.placement.unavailable_reason, which `list models` and studies use
            return (f"runs in the {self.env!r} model environment (`matteralign env create {self.env}`)"
                    + ("; needs a checkpoint (checkpoint=PATH)" if self.requires_checkpoint else ""))
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
            return NEEDS_CHECKPOINT
        return None


#: The reason :meth:`ModelSpec.unavailable_reason` gives when a checkpoint is all that is missing.
NEEDS_CHECKPOINT = "needs a local checkpoint (checkpoint=PATH)"


def _current_env() -> str | None:
    """The model environment this Python runs in (``MATTERALIGN_ENV``; ``None``: the project's own)."""
    import os

    return os.environ.get("MATTERALIGN_ENV") or None


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


def expand_layers(spec: ModelSpec | str, value: str | Sequence[str] | None) -> list[str]:
    """Layer names, in forward order, for a study's or a command's ``layers`` value.

    Parameters
    ----------
    spec : ModelSpec or str
        The model (or its registered name).
    value : str, sequence of str or None
        ``None``: the default layer; ``"all"``: every layer except exact aliases; a layer name; or a list of
        names (duplicates dropped, ``"all"`` allowed inside).

    Returns
    -------
    list of str
        Distinct layer names sorted by their position in :attr:`ModelSpec.layers` (forward order).

    Raises
    ------
    UnknownNameError
        A name that is not a layer of the model; the message lists the valid ones in forward order.
    InputError
        An empty list, or a value that is neither a string nor a list of strings.
    """
    if isinstance(spec, str):
        spec = get_spec(spec)
    if value is None:
        return [spec.default_layer]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(v, str) for v in items):
        raise InputError(f"layers of model {spec.name!r} must be a layer name, a list of names or 'all'; "
                         f"got {value!r}")
    if len(items) == 0:
        raise InputError(f"layers of model {spec.name!r}: the list is empty; name at least one layer or 'all'")
    pos = {n: i for i, n in enumerate(spec.layers)}
    chosen: set[str] = set()
    for v in items:
        if v == "all":
            chosen.update(n for n in spec.layers if n not in spec.aliases)
        elif v in pos:
            chosen.add(v)
        else:
            raise unknown_layer(spec.name, v, spec.layers)
    return sorted(chosen, key=pos.__getitem__)


def unknown_layer(model: str, layer: str, layers: Sequence[str]) -> UnknownNameError:
    """The error for a layer that ``model`` does not have; lists its layers in forward order."""
    err = UnknownNameError(f"layer of model {model!r}", str(layer), layers)
    close = difflib.get_close_matches(str(layer), list(layers), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    err.args = (f"unknown layer {layer!r} of model {model!r}.{hint} Layers in forward order: "
                f"{', '.join(layers)} (or 'all')",)
    err.available = list(layers)
    return err


def names() -> list[str]:
    """Sorted names of every registered model."""
    _discover()
    return sorted(MODELS)


#: ``NAME@LABEL`` names registered model ``NAME`` run under its own name (see :func:`get_spec`).
LABEL_SEP = "@"
_LABELLED: dict[str, ModelSpec] = {}


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name`` (:class:`UnknownNameError` with close matches).

    A labelled name ``NAME@LABEL`` (``"esm2-t33-650m@finetuned"``) is registered model ``NAME`` under a name
    of its own: the same spec with ``name`` (and the factory's ``name`` keyword) set to ``NAME@LABEL``, so a
    study can run two checkpoints of one architecture side by side, each stored and tabled under its own
    name. ``LABEL`` is lowercase letters, digits, ``.``, ``_`` and ``-``; ``NAME`` must be registered.
    """
    _discover()
    if isinstance(name, str) and name not in MODELS and LABEL_SEP in name:
        return _labelled(name)
    if not isinstance(name, str) or name not in MODELS:
        raise UnknownNameError("model", str(name), MODELS)
    return MODELS[name]


def _labelled(name: str) -> ModelSpec:
    import dataclasses
    import re

    if name in _LABELLED:
        return _LABELLED[name]
    base, _, label = name.partition(LABEL_SEP)
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", label):
        raise InputError(f"model {name!r}: the label after {LABEL_SEP!r} must be lowercase letters, digits, '.', "
                         f"'_' or '-' (starting with a letter or digit); got {label!r}")
    if base not in MODELS:
        raise UnknownNameError("model", base, MODELS)
    spec = MODELS[base]
    kwargs = {**spec.kwargs, "name": name} if "name" in spec.kwargs else dict(spec.kwargs)
    out = dataclasses.replace(spec, name=name, kwargs=kwargs,
                              description=f"{spec.description} [{base} labelled {label!r}]")
    _LABELLED[name] = out
    return out


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
    if spec.env and _current_env() != spec.env:
        here = _current_env()
        where = "the main environment" if here is None else f"the {here!r} environment"
        raise ModelError(f"model {name!r} runs in the {spec.env!r} model environment (this Python is {where}); "
                         f"run it through matteralign.execute (`matteralign extract --model {name} ...`), which "
                         f"starts its workers there; create it first with `matteralign env create {spec.env}`")
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
        Keys ``name``, ``family``, ``modality``, ``layers`` (list, forward order), ``depths`` and ``widths``
        (lists aligned with ``layers``; a width may be None), ``default_layer``, ``requires_checkpoint``,
        ``available`` (bool), ``reason`` (str or None), ``description``, ``env`` (the model environment it
        runs in, or None).
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
                "depths": [li.depth for li in spec.layer_info()],
                "widths": [li.width for li in spec.layer_info()],
                "default_layer": spec.default_layer,
                "requires_checkpoint": spec.requires_checkpoint,
                "available": reason is None,
                "reason": reason,
                "description": spec.description,
                "env": spec.env,
            }
        )
    return rows
