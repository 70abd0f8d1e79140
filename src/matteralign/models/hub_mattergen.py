"""MatterGen adapter for a local checkpoint folder (``mattergen==1.0.3``, run in the ``mattergen`` environment).

MatterGen (Zeni et al., Nature 2025, arXiv:2312.03687) is a diffusion model of crystals: fractional
coordinates, lattice and atom types are corrupted jointly, and a GemNet-T score network
(``GemNetTDenoiser``) predicts the denoising direction of each at diffusion time ``t``. Its GemNet
returns per-atom ``node_embeddings`` (512-d for the released models), the input of the atom-type
head ``fc_atom``; the time enters as a sinusoidal encoding of ``t`` per crystal, concatenated to
each atom's type embedding.

Layers (per atom, read with a forward hook on ``denoiser.gemnet``, taking its output's
``node_embeddings``) are those node embeddings of the *clean* structure, with its real atom types,
at three diffusion times:

* ``node_embedding_t0.01`` (default): nearly the data end of the diffusion;
* ``node_embedding_t0.1``, ``node_embedding_t0.5``: further along it.

No noise is added: the structure is passed as it is, only the time conditioning changes, so every
layer is deterministic (and does not depend on ``seed``). The features are invariant to rotating
and translating the crystal (GemNet-T reads distances and angles). One caveat for real
checkpoints: their graph keeps at most ``max_neighbors`` (50) neighbours within the cutoff (7 Å),
closest first, so on a highly symmetric crystal whose neighbour shell straddles that count the
kept subset depends on floating-point ties, and a translation can change it.

Loading uses the package's own loader, ``load_model_diffusion(MatterGenCheckpointInfo(model_path=DIR,
load_epoch="last"))``, on a folder ``DIR`` holding ``config.yaml`` and ``checkpoints/last.ckpt`` (the
layout of ``MatterGenCheckpointInfo.from_hf_hub``). The Lightning checkpoint is a pickle that
``torch.load`` rejects under its ``weights_only=True`` default, so the loader runs with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` set only around that call, and only with
``trust_checkpoint=True``. The recorded SHA-256 of the folder hashes both files
(:func:`checkpoint_dir_sha256`).

Two gaps of the PyPI wheel are filled here: ``GemNetT`` always opens
``{MODELS_PROJECT_ROOT}/common/gemnet/gemnet-dT.json`` (a table of scale factors, which a checkpoint
overwrites since they are parameters), which the wheel does not ship: ``MODELS_PROJECT_ROOT`` is
pointed at ``matteralign/data/mattergen``, whose table sets every factor of a GemNet-T with up to 4
interaction blocks to 1.0 (the value an unfitted factor has). And ``torch_sparse``, when not
installed, is replaced by :mod:`matteralign.models._torch_sparse_shim`, a pure-torch version of the
one operation GemNet-T uses; the provenance says which was used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ._hub import CheckpointExtractor
from ._registry import ModelSpec, register
from .base import file_sha256

__all__ = ["MatterGenExtractor", "LAYERS", "TIMES", "CHECKPOINT_FILES", "checkpoint_dir_sha256", "scale_root"]

#: Diffusion time of each layer.
TIMES = {"node_embedding_t0.01": 0.01, "node_embedding_t0.1": 0.1, "node_embedding_t0.5": 0.5}
LAYERS = tuple(TIMES)

#: The files of a checkpoint folder, relative to it.
CHECKPOINT_FILES = ("config.yaml", "checkpoints/last.ckpt")

#: Largest atomic number MatterGen embeds (``mattergen.common.utils.globals.MAX_ATOMIC_NUM``).
MAX_Z = 100


def scale_root() -> Path:
    """The folder put in ``mattergen.common.gemnet.gemnet.MODELS_PROJECT_ROOT`` (holds ``common/gemnet/gemnet-dT.json``)."""
    return Path(__file__).resolve().parents[1] / "data" / "mattergen"


def checkpoint_dir_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a MatterGen checkpoint folder: of its files' names and SHA-256s.

    .. math:: \\mathrm{sha256}\\big(\\textstyle\\sum_f f \\,\\|\\, \\texttt{:} \\,\\|\\, \\mathrm{sha256}(f) \\,\\|\\, \\texttt{\\\\n}\\big),
              \\quad f \\in (\\texttt{config.yaml}, \\texttt{checkpoints/last.ckpt})

    Parameters
    ----------
    path : path
        The folder.

    Returns
    -------
    str
        64 hex digits; changes when either file changes.
    """
    h = hashlib.sha256()
    for rel in CHECKPOINT_FILES:
        h.update(f"{rel}:{file_sha256(Path(path) / rel)}\n".encode())
    return h.hexdigest()


@contextlib.contextmanager
def _no_weights_only() -> Iterator[None]:
    """``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` inside the block only (restored after, also on error)."""
    key = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _prepare() -> dict[str, Any]:
    """Import mattergen with the wheel's gaps filled; returns what was used (for the provenance)."""
    from . import _torch_sparse_shim

    shimmed = _torch_sparse_shim.install()
    with contextlib.redirect_stdout(sys.stderr):  # mattergen prints MODELS_PROJECT_ROOT on import
        import mattergen.common.gemnet.gemnet as gemnet_module
        from mattergen.common.utils import eval_utils  # noqa: F401  - configures logging on import

    gemnet_module.MODELS_PROJECT_ROOT = str(scale_root())
    import logging

    for name in ("mattergen", "mattergen.common.utils.eval_utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from .base import package_version

    return {"torch_sparse": ("matteralign pure-torch stand-in (matteralign.models._torch_sparse_shim)" if shimmed
                             else f"torch-sparse {package_version('torch-sparse')}"),
            "torch_scatter": package_version("torch-scatter"),
            "scale_file": "matteralign/data/mattergen/common/gemnet/gemnet-dT.json (every factor 1.0; "
                          "the checkpoint's values replace them)"}


class MatterGenExtractor(CheckpointExtractor):
    """Per-atom GemNet node embeddings of MatterGen's denoiser at a chosen diffusion time.

    Parameters
    ----------
    checkpoint : path
        A folder with ``config.yaml`` and ``checkpoints/last.ckpt`` (a released model's folder,
        e.g. ``mattergen_base``, as downloaded from the hub).
    trust_checkpoint : bool
        Required (``True``): the Lightning checkpoint is unpickled with ``weights_only=False``.
    name : str, optional
    **options
        ``device``, ``seed`` (unused: nothing is random), ``num_threads``, ``batch_size``.

    Notes
    -----
    Crystals only: a structure that is not periodic in all three directions is skipped with a
    reason. Cost: one denoiser forward pass per batch and layer (GemNet-T with triplets; about
    0.1 s for ten atoms with the released 44.6 M-parameter model on one CPU core).
    """

    family = "mattergen"
    modality = "atoms"
    default_layer = "node_embedding_t0.01"
    needs_trust = True
    package = "mattergen"

    @staticmethod
    def _check_checkpoint(path: str | os.PathLike | None, model: str) -> str:
        if path is None:
            raise ModelError(f"model {model!r} needs a local checkpoint folder (config.yaml + checkpoints/last.ckpt): "
                             "pass checkpoint=DIR")
        p = os.path.abspath(os.fspath(path))
        if not os.path.isdir(p):
            what = "does not exist" if not os.path.exists(p) else "is not a folder"
            raise ModelError(f"checkpoint for model {model!r} not found: {p!r} {what}; expected a folder holding "
                             f"{' and '.join(CHECKPOINT_FILES)}")
        missing = [rel for rel in CHECKPOINT_FILES if not os.path.isfile(os.path.join(p, rel))]
        if missing:
            raise ModelError(f"checkpoint folder {p!r} of model {model!r} lacks {', '.join(missing)}; expected "
                             f"{' and '.join(CHECKPOINT_FILES)}")
        return p

    def _checkpoint_sha256(self) -> str:
        self.checkpoint_files = {rel: file_sha256(Path(self.checkpoint) / rel) for rel in CHECKPOINT_FILES}
        return checkpoint_dir_sha256(self.checkpoint)

    def _load(self) -> None:
        self._used = _prepare()
        from mattergen.common.utils.data_classes import MatterGenCheckpointInfo
        from mattergen.common.utils.eval_utils import load_model_diffusion

        info = MatterGenCheckpointInfo(model_path=Path(self.checkpoint), load_epoch="last")
        with _no_weights_only(), contextlib.redirect_stdout(sys.stderr):
            lightning_module = load_model_diffusion(info)
        model = lightning_module.diffusion_module.model
        if not (hasattr(model, "gemnet") and hasattr(model, "fc_atom")):
            raise TypeError(f"expected a GemNet denoiser with fc_atom in diffusion_module.model; "
                            f"got {type(model).__name__}")
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def layers(self) -> list[str]:
        return list(LAYERS)

    def input_reason(self, obj: Any) -> str | None:
        from ._atoms import structure_reason

        reason = structure_reason(obj, max_z=MAX_Z)
        if reason is None and not obj.get_pbc().all():
            return "MatterGen embeds crystals only; this structure is not periodic"
        return reason

    def _batch(self, atoms_list):
        import torch
        from mattergen.common.data.chemgraph import ChemGraph
        from mattergen.common.data.collate import collate

        graphs = []
        for a in atoms_list:
            frac = np.mod(a.get_scaled_positions(wrap=False), 1.0)
            frac[frac >= 1.0] = 0.0  # np.mod can round a tiny negative value up to exactly 1.0
            graphs.append(ChemGraph(pos=torch.tensor(frac, dtype=torch.float32),
                                    cell=torch.tensor(np.asarray(a.cell[:])[None], dtype=torch.float32),
                                    atomic_numbers=torch.tensor(a.get_atomic_numbers(), dtype=torch.long),
                                    num_atoms=torch.tensor([len(a)], dtype=torch.long)))
        return collate(graphs).to(self.device)

    def _embed(self, inputs, layer):
        import torch

        from ._atoms import capture

        batch = self._batch(inputs)
        t = torch.full((len(inputs),), TIMES[layer], dtype=torch.float32, device=self.device)
        with capture({"gemnet": self.model.gemnet}, take=lambda _n, out: out.node_embeddings) as got:
            self.model(batch, t)
        h = got["gemnet"][-1].cpu().numpy().astype(np.float32)
        return np.split(h, np.cumsum([len(a) for a in inputs])[:-1])

    def _hub_provenance(self) -> dict[str, Any]:
        g = self.model.gemnet
        return {"model_class": type(self.model).__name__, "gemnet_class": type(g).__name__,
                "hidden_dim": int(self.model.hidden_dim), "num_blocks": int(g.num_blocks),
                "cutoff": float(g.cutoff), "max_neighbors": int(g.max_neighbors),
                "property_embeddings": sorted(self.model.property_embeddings),
                "times": dict(TIMES), "noise": "none: the clean structure, conditioned on the layer's time t",
                "checkpoint_files": dict(self.checkpoint_files), **self._used}


register(ModelSpec(name="mattergen", factory=f"{__name__}:MatterGenExtractor", family="mattergen", modality="atoms",
                       kind="generative", embedding_type="generative", gpu=True,
                   layers=LAYERS, default_layer="node_embedding_t0.01", kwargs={"name": "mattergen"},
                   requires=("mattergen", "torch", "torch_scatter", "ase"), requires_checkpoint=True,
                   description=("MatterGen diffusion model (checkpoint folder: config.yaml + checkpoints/last.ckpt, "
                                "trusted pickle); GemNet node embeddings of the clean crystal at t = 0.01, 0.1, 0.5"),
                   env="mattergen"))
