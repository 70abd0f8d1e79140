"""Model adapters (extractors) and their registry.

>>> from matteralign import models
>>> models.names()                       # doctest: +SKIP
>>> ex = models.load("chgnet-0.3.0")     # doctest: +SKIP
>>> ex.embed([atoms])[0].shape           # doctest: +SKIP  (n_atoms, 64)

See :mod:`matteralign.models.base` for the Extractor protocol and
:mod:`matteralign.models._registry` for how adapters register.
"""

from __future__ import annotations

from ._registry import MODELS, LayerInfo, ModelSpec, expand_layers, get_spec, info, load, names, register
from .base import MODALITIES, POOLINGS, Extractor, pool

__all__ = [
    "Extractor",
    "ModelSpec",
    "LayerInfo",
    "expand_layers",
    "MODELS",
    "MODALITIES",
    "POOLINGS",
    "register",
    "load",
    "names",
    "info",
    "get_spec",
    "pool",
]
