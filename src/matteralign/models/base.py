"""The Extractor protocol: what every model adapter provides.

An extractor turns one *view* of a sample (its ``modality``: ``ase.Atoms`` for interatomic
potentials and descriptors, a string for chemical/text language models) into an array of
features taken from a named layer of the real model (captured by a forward hook; nothing is
re-implemented):

* atoms models return one float32 array ``(n_atoms_i, d)`` per structure (per-atom features);
* string models return one float32 array ``(1, d)`` per string.

Pooling to one row per sample (mean by default) is done by the store (:func:`pool`).

Subclass contract
-----------------
A subclass sets the class attributes ``name``, ``family``, ``modality``, ``default_layer`` (and
``requires_checkpoint`` for models whose weights must be supplied as a local file), and
implements

* ``layers() -> list[str]``: the layer names ``embed`` accepts, in forward order;
* ``_embed(inputs, layer) -> list[ndarray]``: the computation on validated, supported inputs;
* optionally ``_embed_layers(inputs, layers) -> {layer: list[ndarray]}``: several layers from **one**
  forward pass (hooks on every requested module at once); without it :meth:`embed_samples_layers`
  runs one pass per layer;
* optionally ``input_reason(obj) -> str | None``: why one input object cannot be embedded
  (e.g. an element outside the model's set), ``None`` when it can;
* optionally ``_provenance() -> dict``: model-specific provenance (weights file, version...).

The base class does the rest: input validation, batching, skipping unsupported samples with a
recorded reason, thread count, ``torch.no_grad()`` and seeding.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import InputError, ModelError, UnknownNameError

__all__ = ["Extractor", "MODALITIES", "POOLINGS", "pool", "file_sha256", "package_version"]

#: Views an extractor may read (the ``modality`` attribute); mirrors :data:`matteralign.samples.VIEWS`.
MODALITIES = ("atoms", "smiles", "selfies", "text", "sequence", "grid")

#: Poolings from per-atom features to one row per sample.
POOLINGS = ("mean", "sum", "max")


def pool(features: np.ndarray, how: str = "mean") -> np.ndarray:
    """Pool per-atom features ``(n_atoms, d)`` to one row ``(d,)``.

    .. math:: \\bar h = \\frac{1}{n} \\sum_{i=1}^{n} h_i \\quad(\\text{mean}),\\qquad
              \\sum_i h_i \\quad(\\text{sum}),\\qquad \\max_i h_{i\\cdot} \\quad(\\text{max, per feature})

    Parameters
    ----------
    features : ndarray, shape (n_atoms, d)
    how : {"mean", "sum", "max"}

    Returns
    -------
    ndarray, shape (d,), float32
        Accumulated in float64 and cast to float32. Mean and max are invariant to atom order
        and to replicating the structure; sum is extensive.
    """
    if how not in POOLINGS:
        raise UnknownNameError("pooling", how, POOLINGS)
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[0] == 0:
        raise InputError(f"pool expects a non-empty (n_atoms, d) array; got shape {f.shape}")
    if how == "max":
        return f.max(axis=0).astype(np.float32)
    acc = f.astype(np.float64).sum(axis=0)
    if how == "mean":
        acc /= f.shape[0]
    return acc.astype(np.float32)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_version(dist: str) -> str | None:
    """Installed version of distribution ``dist`` (``None`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


class Extractor:
    """Base class of model adapters (the Extractor protocol).

    Parameters
    ----------
    device : str
        Torch device (``"cpu"`` by default).
    seed : int
        Seed for anything random in the adapter (re-initialised controls, dropout is off in eval).
    num_threads : int, optional
        ``torch.set_num_threads`` while embedding (restored afterwards); ``None`` leaves it alone.
    batch_size : int
        Default number of inputs per forward pass in :meth:`embed_samples`.

    Attributes
    ----------
    name : str
        Registry name, lowercase (``"chgnet-0.3.0"``).
    family : str
        Model family (``"chgnet"``, ``"sevennet"``, ``"ani"``, ``"descriptor"``, ``"lm"``...).
    modality : str
        The sample view read, one of :data:`MODALITIES`.
    default_layer : str
        Layer used when ``layer=None``: by convention the representation entering the readout.
    requires_checkpoint : bool
        The adapter needs a local checkpoint path (weights are not bundled).
    """

    name: str = "extractor"
    family: str = "unknown"
    modality: str = "atoms"
    default_layer: str = ""
    requires_checkpoint: bool = False

    def __init__(self, *, device: str = "cpu", seed: int = 0, num_threads: int | None = None,
                 batch_size: int = 16):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer; got {batch_size!r}")
        if num_threads is not None and (not isinstance(num_threads, (int, np.integer)) or num_threads < 1):
            raise InputError(f"num_threads must be a positive integer or None; got {num_threads!r}")
        self.device = device
        self.seed = int(seed)
        self.num_threads = num_threads
        self.batch_size = int(batch_size)

    # ------------------------------------------------------------------ protocol
    def layers(self) -> list[str]:
        """Names of the layers :meth:`embed` can return, in forward order (nearest the input first)."""
        return [self.default_layer]

    def layer_info(self) -> list:
        """The layers in forward order with depth index and width (:class:`~matteralign.models.LayerInfo`).

        Taken from the registered :class:`~matteralign.models.ModelSpec` of this model when it lists the same
        layers; otherwise the depth is the position in :meth:`layers` and the width unknown.
        """
        from ._registry import MODELS, LayerInfo

        names = self.layers()
        spec = MODELS.get(self.name)
        if spec is not None and list(spec.layers) == names:
            return spec.layer_info()
        return [LayerInfo(n, i) for i, n in enumerate(names)]

    def resolve_layers(self, layers) -> list[str]:
        """Distinct layer names in forward order from a name, a list of names or ``"all"``.

        Raises
        ------
        UnknownNameError
            A name that is not a layer of this model (the valid ones are listed in forward order).
        InputError
            An empty list or a value that is not a name or a list of names.
        """
        from ._registry import unknown_layer

        names = self.layers()
        items = [layers] if isinstance(layers, str) else layers
        if not isinstance(items, Sequence) or not items or not all(isinstance(v, str) for v in items):
            raise InputError(f"layers of model {self.name!r} must be a layer name, a non-empty list of names "
                             f"or 'all'; got {layers!r}")
        aliases = {li.name for li in self.layer_info() if li.alias_of}
        chosen: set[str] = set()
        for v in items:
            if v == "all":
                chosen.update(n for n in names if n not in aliases)
            elif v in names:
                chosen.add(v)
            else:
                raise unknown_layer(self.name, v, names)
        return [n for n in names if n in chosen]

    def input_reason(self, obj: Any) -> str | None:
        """Why the view object ``obj`` cannot be embedded (``None`` when it can). Override to restrict."""
        return None

    def unsupported_reason(self, sample) -> str | None:
        """Why ``sample`` cannot be embedded by this model, or ``None`` when it can.

        Parameters
        ----------
        sample : Sample

        Returns
        -------
        str or None
            A short human-readable reason (recorded in the store for skipped samples).
        """
        obj = getattr(sample, self.modality, None)
        if obj is None:
            return f"no {self.modality!r} view"
        return self.input_reason(obj)

    def view(self, sample) -> Any:
        """The input this model reads from ``sample`` (its ``modality`` view; a control may read the id)."""
        return getattr(sample, self.modality)

    def supports(self, sample) -> bool:
        """Whether :meth:`embed_samples` will embed ``sample`` (see :meth:`unsupported_reason`)."""
        return self.unsupported_reason(sample) is None

    def resolve_layer(self, layer: str | None) -> str:
        """Return ``layer`` (or the default layer), checking that it exists."""
        if layer is None:
            return self.default_layer
        names = self.layers()
        if layer not in names:
            from ._registry import unknown_layer

            raise unknown_layer(self.name, layer, names)
        return layer

    def embed(self, inputs: Sequence[Any], *, layer: str | None = None) -> list[np.ndarray]:
        """Features of ``layer`` for each input.

        Parameters
        ----------
        inputs : sequence
            Objects of the model's modality: ``ase.Atoms`` for atoms models, ``str`` for string models.
        layer : str, optional
            One of :meth:`layers`; the default layer when ``None``.

        Returns
        -------
        list of ndarray, float32
            One ``(n_atoms_i, d)`` array per structure (atoms models) or ``(1, d)`` per string.

        Raises
        ------
        InputError
            Empty input, or an input the model cannot embed (use :meth:`embed_samples` to skip those).
        UnknownNameError
            Unknown layer.
        """
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            try:
                inputs = list(inputs)
            except TypeError:
                raise InputError(f"{self.name}.embed expects a sequence of inputs; got {type(inputs).__name__}") from None
        if len(inputs) == 0:
            raise InputError(f"{self.name}.embed got no inputs; expected at least one {self.modality} object")
        layer = self.resolve_layer(layer)
        for i, obj in enumerate(inputs):
            reason = self.input_reason(obj)
            if reason is not None:
                raise InputError(f"{self.name} cannot embed input {i}: {reason}")
        return self._run(list(inputs), layer)

    def _run(self, inputs: list[Any], layer: str) -> list[np.ndarray]:
        """Forward pass on checked inputs: runtime settings, shape check, float32."""
        with self._runtime():
            out = self._embed(inputs, layer)
        if len(out) != len(inputs):  # pragma: no cover - adapter bug
            raise ModelError(f"{self.name}: adapter returned {len(out)} arrays for {len(inputs)} inputs")
        return [np.ascontiguousarray(a, dtype=np.float32) for a in out]

    def _checked_structures(self, atoms_list, action: str = "predict") -> list:
        """``atoms_list`` as a list, after checking every structure is one this model can take.

        Raises
        ------
        InputError
            No structures, or a structure this model cannot take (its index and the reason).
        """
        atoms_list = list(atoms_list)
        if not atoms_list:
            raise InputError(f"{self.name}.{action} got no structures")
        for i, a in enumerate(atoms_list):
            reason = self.input_reason(a)
            if reason:
                raise InputError(f"{self.name} cannot {action} structure {i}: {reason}")
        return atoms_list

    def embed_samples(self, samples: Sequence, *, layer: str | None = None, batch_size: int | None = None):
        """Embed the supported samples; skip the others and say why.

        Parameters
        ----------
        samples : sequence of Sample
        layer : str, optional
        batch_size : int, optional
            Inputs per forward pass (the adapter's ``batch_size`` when ``None``).

        Returns
        -------
        ids : list of str
            Ids of the embedded samples, in input order.
        arrays : list of ndarray, float32
            One array per embedded sample (see :meth:`embed`).
        skipped : dict of str to str
            Sample id → reason, for each sample that was not embedded.
        """
        bs = self._check_batch_size(batch_size)
        layer = self.resolve_layer(layer)
        ids, views, skipped = self._supported(samples)
        arrays: list[np.ndarray] = []
        saved, self.batch_size = self.batch_size, int(bs)  # adapters batch their forward passes by it
        try:
            for start in range(0, len(views), bs):
                arrays.extend(self._run(views[start:start + bs], layer))
        finally:
            self.batch_size = saved
        return ids, arrays, skipped

    def embed_samples_layers(self, samples: Sequence, layers, *, batch_size: int | None = None):
        """Embed the supported samples at several layers, from one forward pass where the adapter can.

        Parameters
        ----------
        samples : sequence of Sample
        layers : str or sequence of str
            Layer names, or ``"all"`` (every layer except exact aliases); duplicates are dropped.
        batch_size : int, optional
            Inputs per forward pass (the adapter's ``batch_size`` when ``None``).

        Returns
        -------
        ids : list of str
            Ids of the embedded samples, in input order (the same for every layer).
        arrays : dict of str to list of ndarray
            Layer -> one float32 array per embedded sample (as :meth:`embed_samples`), keys in forward order.
        skipped : dict of str to str
            Sample id -> reason, for each sample that was not embedded.

        Notes
        -----
        Adapters that implement ``_embed_layers`` (CHGNet, SevenNet, ANI-1x, the language models) put hooks on
        every requested module and run each batch once, so the arrays equal those of separate
        :meth:`embed_samples` calls bit for bit; the others fall back to one :meth:`embed_samples` per layer.
        """
        names = self.resolve_layers(layers)
        samples = list(samples)
        if type(self)._embed_layers is Extractor._embed_layers:  # no one-pass capture: one pass per layer
            out: dict[str, list[np.ndarray]] = {}
            ids = skipped = None
            for layer in names:
                ids, out[layer], skipped = self.embed_samples(samples, layer=layer, batch_size=batch_size)
            return ids, out, skipped
        bs = self._check_batch_size(batch_size)
        ids, views, skipped = self._supported(samples)
        out = {layer: [] for layer in names}
        saved, self.batch_size = self.batch_size, int(bs)
        try:
            for start in range(0, len(views), bs):
                for layer, arrays in self._run_layers(views[start:start + bs], names).items():
                    out[layer].extend(arrays)
        finally:
            self.batch_size = saved
        return ids, out, skipped

    def _check_batch_size(self, batch_size) -> int:
        bs = self.batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise InputError(f"batch_size must be a positive integer; got {bs!r}")
        return int(bs)

    def _supported(self, samples) -> tuple[list[str], list[Any], dict[str, str]]:
        """Ids and views of the samples this model can embed, and the reasons for the others."""
        ids, views, skipped = [], [], {}
        for s in samples:
            reason = self.unsupported_reason(s)
            if reason is None:
                ids.append(s.id)
                views.append(self.view(s))
            else:
                skipped[s.id] = reason
        return ids, views, skipped

    def _run_layers(self, inputs: list[Any], layers: list[str]) -> dict[str, list[np.ndarray]]:
        """One forward pass on checked inputs for every layer: runtime settings, shape check, float32."""
        with self._runtime():
            out = self._embed_layers(inputs, layers)
        for layer in layers:
            if len(out[layer]) != len(inputs):  # pragma: no cover - adapter bug
                raise ModelError(f"{self.name}: adapter returned {len(out[layer])} arrays for {len(inputs)} inputs")
        return {layer: [np.ascontiguousarray(a, dtype=np.float32) for a in out[layer]] for layer in layers}

    def provenance(self) -> dict[str, Any]:
        """What produced the features: model, version, weights hash, layer names, runtime.

        Returns
        -------
        dict
            JSON-serialisable. Always has ``name``, ``family``, ``modality``, ``default_layer``,
            ``layers``, ``seed``, ``device``, ``python``, ``numpy`` and ``torch`` (version or None);
            adapters add ``package``, ``package_version``, ``weights``, ``weights_sha256``,
            ``n_parameters`` and model-specific keys.
        """
        info: dict[str, Any] = {
            "name": self.name,
            "family": self.family,
            "modality": self.modality,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "default_layer": self.default_layer,
            "layers": self.layers(),
            "seed": self.seed,
            "device": self.device,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": package_version("torch"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        info.update(self._provenance())
        return info

    # ------------------------------------------------------------------ for subclasses
    def _embed(self, inputs: list[Any], layer: str) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _embed_layers(self, inputs: list[Any], layers: list[str]) -> dict[str, list[np.ndarray]]:
        """Several layers from one forward pass; adapters with hooks override it (see the module notes)."""
        return {layer: self._embed(inputs, layer) for layer in layers}

    def _provenance(self) -> dict[str, Any]:
        return {}

    @contextmanager
    def _runtime(self) -> Iterator[None]:
        """Thread count and ``torch.no_grad()`` around a forward pass (no-op without torch)."""
        try:
            import torch
        except ImportError:  # descriptor-only environments
            yield
            return
        old = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(int(self.num_threads))
        try:
            with torch.no_grad():
                yield
        finally:
            if self.num_threads is not None:
                torch.set_num_threads(old)

    @staticmethod
    def _check_checkpoint(path: str | os.PathLike | None, model: str) -> str:
        """Return ``path`` as a string if it is an existing file; raise :class:`ModelError` otherwise."""
        if path is None:
            raise ModelError(f"model {model!r} needs a local checkpoint file: pass checkpoint=PATH")
        p = os.fspath(path)
        if not os.path.isfile(p):
            raise ModelError(f"checkpoint for model {model!r} not found: {p!r} is not a file")
        return p

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, layer={self.default_layer!r})"
