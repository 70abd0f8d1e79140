"""Random controls: what alignment looks like when a representation knows nothing (or only the formula).

* ``random``: one standard-normal vector per sample, drawn from a generator seeded by
  ``sha256(seed, sample id)``. The same sample always gets the same vector, whatever the batch, the
  order or the other samples, so a random model can be extracted in shards and resumed. It reads only
  the sample id and supports every sample. Its alignment with any model is the noise floor
  (CKNNA ≈ 0 in arXiv 2512.03750).
* ``element-random``: a fixed standard-normal vector per element (seeded by ``(seed, Z)``), one row per
  atom. Mean-pooled it is a random linear projection of the element-fraction vector, so it carries the
  composition and nothing else: the floor a structure-aware model must beat.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..errors import InputError
from ._registry import ModelSpec, register
from .base import Extractor
from .descriptors import COMPOSITION_MAX_Z, SOAP_SPECIES, atoms_reason

__all__ = ["RandomExtractor", "ElementRandomExtractor", "id_seed"]


def id_seed(sample_id: str, seed: int = 0) -> int:
    """A 64-bit generator seed from a global seed and a sample id (stable across runs and platforms).

    .. math:: s = \\operatorname{int}\\big(\\mathrm{SHA256}(\\text{"matteralign-random"} \\,\\|\\, seed \\,\\|\\,
              id)[0{:}8]\\big)
    """
    h = hashlib.sha256(f"matteralign-random\0{int(seed)}\0{sample_id}".encode())
    return int.from_bytes(h.digest()[:8], "little")


def _check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise InputError(f"random control: dim must be a positive integer; got {dim!r}")
    return int(dim)


class RandomExtractor(Extractor):
    """Gaussian random embedding per sample, keyed by the sample id.

    .. math:: x_{\\text{id}} \\sim \\mathcal N(0, I_d), \\quad \\text{generator seeded by } s(\\text{id}, seed)

    Parameters
    ----------
    dim : int
        Embedding size d (default 64).
    seed : int
        Global seed; a different seed gives an independent control.
    **options
        Passed to :class:`~matteralign.models.base.Extractor`.

    Notes
    -----
    :meth:`embed` takes sample ids (strings); :meth:`embed_samples` passes each ``sample.id``. Every sample
    is supported. ``modality`` is nominally ``"atoms"`` (the study's default view); no view is read.
    """

    name = "random"
    family = "control"
    modality = "atoms"
    default_layer = "gaussian"

    def __init__(self, *, dim: int = 64, **options):
        self.dim = _check_dim(dim)
        options.setdefault("batch_size", 1024)
        super().__init__(**options)

    def unsupported_reason(self, sample) -> str | None:
        return None

    def input_reason(self, obj: Any) -> str | None:
        if not isinstance(obj, str) or not obj:
            return f"expected a sample id (non-empty str); got {type(obj).__name__}"
        return None

    def view(self, sample) -> str:
        """The sample id: the only thing this control reads."""
        return sample.id

    def _embed(self, inputs: list[Any], layer: str) -> list[np.ndarray]:
        return [np.random.default_rng(id_seed(i, self.seed)).standard_normal((1, self.dim)).astype(np.float32)
                for i in inputs]

    def _provenance(self) -> dict[str, Any]:
        return {"dim": self.dim, "n_features": self.dim, "distribution": "standard normal",
                "seeding": "numpy default_rng(int(sha256('matteralign-random', seed, sample id)[:8]))",
                "per_atom": False}


class ElementRandomExtractor(Extractor):
    """A fixed random vector per element, one row per atom (composition-only control).

    .. math:: h_i = r_{Z_i}, \\quad r_Z \\sim \\mathcal N(0, I_d) \\text{ seeded by } (seed, Z);
              \\qquad \\bar h = R^\\top x \\ (x = \\text{element fractions})

    Parameters
    ----------
    dim : int
        Feature size d (default 64).
    seed : int
        Global seed.
    **options
        Passed to :class:`~matteralign.models.base.Extractor`.
    """

    name = "element-random"
    family = "control"
    modality = "atoms"
    default_layer = "element"

    def __init__(self, *, dim: int = 64, **options):
        self.dim = _check_dim(dim)
        super().__init__(**options)
        self.table = np.stack([
            np.random.default_rng(id_seed(f"element:{z}", self.seed)).standard_normal(self.dim)
            for z in range(1, COMPOSITION_MAX_Z + 1)
        ]).astype(np.float32)

    def input_reason(self, obj: Any) -> str | None:
        return atoms_reason(obj, SOAP_SPECIES)

    def _embed(self, inputs: list[Any], layer: str) -> list[np.ndarray]:
        return [self.table[np.asarray(a.numbers) - 1] for a in inputs]

    def _provenance(self) -> dict[str, Any]:
        return {"dim": self.dim, "n_features": self.dim, "elements": f"Z=1..{COMPOSITION_MAX_Z}",
                "seeding": "numpy default_rng(int(sha256('matteralign-random', seed, 'element:Z')[:8]))",
                "per_atom": True}


register(ModelSpec(
    name="random", factory=f"{__name__}:RandomExtractor", family="control", modality="atoms", kind="control",
    control=True, views=(),
    layers=("gaussian",), default_layer="gaussian",
    description="Gaussian random vector per sample (d=64), seeded by the sample id: the noise floor",
))
register(ModelSpec(
    name="element-random", factory=f"{__name__}:ElementRandomExtractor", family="control", modality="atoms",
    kind="control", control=True,
    layers=("element",), default_layer="element", requires=("ase",),
    description="Fixed random vector per element, per atom (d=64): pooled, it carries composition only",
))
