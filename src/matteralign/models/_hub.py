"""Shared base of adapters that load a user's local checkpoint inside a model environment."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ModelError
from .base import Extractor, file_sha256, package_version

__all__ = ["CheckpointExtractor", "TRUST_HINT"]

TRUST_HINT = ("loading it unpickles Python objects, which can run code: pass trust_checkpoint=True "
              "(CLI: --trust-checkpoint; study: trust_checkpoint = true) if you trust the file")


class CheckpointExtractor(Extractor):
    """An :class:`Extractor` whose weights come from a local checkpoint file.

    Parameters
    ----------
    checkpoint : path
        The local checkpoint file (its SHA-256 goes into the provenance).
    trust_checkpoint : bool
        Allow formats that are loaded with ``weights_only=False`` (pickles can execute code).
    name : str, optional
        Registry name recorded in the store.
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size`` (see :class:`Extractor`).
    """

    requires_checkpoint = True
    #: The checkpoint format is a pickle that needs ``weights_only=False``.
    needs_trust: bool = False
    package: str = ""

    def __init__(self, *, checkpoint: str | os.PathLike | None = None, trust_checkpoint: bool = False,
                 name: str | None = None, **options: Any):
        super().__init__(**options)
        if name:
            self.name = name
        self.checkpoint = self._check_checkpoint(checkpoint, self.name)
        self.trust_checkpoint = bool(trust_checkpoint)
        if self.needs_trust and not self.trust_checkpoint:
            raise ModelError(f"checkpoint {self.checkpoint!r} of model {self.name!r} is a pickle; {TRUST_HINT}")
        try:
            self.checkpoint_sha256 = self._checkpoint_sha256()
        except OSError as exc:
            raise ModelError(f"cannot read checkpoint {self.checkpoint!r} of model {self.name!r}: {exc}") from exc
        try:
            self._load()
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"could not load checkpoint {self.checkpoint!r} as a {self.name!r} model "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from exc

    def _checkpoint_sha256(self) -> str:
        """SHA-256 recorded for the checkpoint (of the file; adapters of checkpoint folders override it)."""
        return file_sha256(self.checkpoint)

    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hub_provenance(self) -> dict[str, Any]:
        return {}

    def _provenance(self) -> dict[str, Any]:
        from ._atoms import count_parameters

        info = {
            "package": self.package,
            "package_version": package_version(self.package),
            "weights": os.path.abspath(self.checkpoint),
            "weights_sha256": self.checkpoint_sha256,
            "trust_checkpoint": self.trust_checkpoint,
            "env": os.environ.get("MATTERALIGN_ENV"),
            "n_parameters": count_parameters(self.model),
        }
        info.update(self._hub_provenance())
        return info
