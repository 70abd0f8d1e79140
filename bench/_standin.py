"""Stand-in extractors of configurable cost, for scheduling benchmarks (``MATTERALIGN_PLUGINS=_standin``).

``standin-<k>`` sleeps ``MATTERALIGN_STANDIN_MS`` milliseconds per shard and returns one 8-wide row per sample,
so the executor's own cost per unit (transport of 512 samples in and their features out, scheduling,
commit) can be measured without a real model.
"""

from __future__ import annotations

import os
import time
import zlib

import numpy as np

from matteralign.models import Extractor, ModelSpec, register

#: Stand-in models (the paper ran 59).
N_MODELS = 59


class StandIn(Extractor):
    family = "standin"
    modality = "smiles"
    default_layer = "h"

    def __init__(self, *, name: str = "standin-0", **kw):
        super().__init__(**kw)
        self.name = name

    def layers(self):
        return ["h"]

    def _embed(self, inputs, layer):
        return [np.full((1, 8), zlib.crc32(s.encode()) % 97, np.float32) for s in inputs]

    def embed_samples(self, samples, *, layer=None, batch_size=None):  # pragma: no cover - unused
        raise NotImplementedError

    def _run(self, inputs, layer):
        ms = float(os.environ.get("MATTERALIGN_STANDIN_MS", "0"))
        if ms:
            time.sleep(ms / 1000.0 * len(inputs) / 512)
        return self._embed(inputs, layer)


for _k in range(N_MODELS):
    register(ModelSpec(name=f"standin-{_k}", factory=f"{__name__}:StandIn", family="standin", modality="smiles",
                       layers=("h",), default_layer="h", kwargs={"name": f"standin-{_k}"}, kind="control",
                       control=True, description="scheduling benchmark stand-in"), replace=True)
