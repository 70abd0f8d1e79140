"""The worker: runs units of work for an executor, in the project's Python or in a model environment's.

``<python> -m matteralign.execute.worker`` reads one JSON request per line on stdin and answers one JSON
line per request on stdout (``{"id", "ok": true, "output", "seconds"}`` or ``{"id", "ok": false,
"error": {"type", "message"}}``). Inputs and outputs are files (:mod:`matteralign.execute.wire`; pickles
only for call units, which run in the project's own environment). The worker keeps the last model it
loaded, so the shards of one model stream through one loaded instance.

:class:`Handler` is the same logic in-process (the ``inline`` executor and Ray actors use it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

__all__ = ["Handler", "embed_shard", "load_plugins", "main", "run_call"]


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:300]


def _forward(ex, batch: list, layers: list[str], energy: bool):
    """Features of ``batch`` at ``layers`` (one forward pass where the adapter can), and energies or None."""
    if energy:
        views = [ex.view(s) for s in batch]
        feats, energies = ex.embed_with_energy(views, layers)
        return feats, energies
    if len(layers) > 1 and callable(getattr(ex, "embed_samples_layers", None)):
        _ids, feats, skipped = ex.embed_samples_layers(batch, layers, batch_size=len(batch))
        if skipped:  # pragma: no cover - supported samples were checked before
            raise RuntimeError(f"samples skipped inside a checked batch: {skipped}")
        return feats, None
    views = [ex.view(s) for s in batch]
    return {layer: ex._run(views, layer) for layer in layers}, None


def embed_shard(ex, samples: list, layers: list[str], *, batch_size: int | None = None,
                with_energy: bool = False) -> tuple[list[str], dict[str, list], dict[str, str], Any]:
    """Embed one shard: supported samples in batches, the others skipped with their reason.

    A batch whose forward pass raises is run again one sample at a time; a sample that still raises
    is recorded as skipped with the error, and the shard completes. When every sample of the shard
    raises, the first error is raised (a broken model or checkpoint must not look like skipped samples).

    Returns
    -------
    ids : list of str
    feats : dict of str to list of ndarray
        Per layer, one ``(n_i, D)`` float32 array per embedded id.
    skipped : dict of str to str
    energies : ndarray of float64 (one per id) or None
    """
    import numpy as np

    bs = ex.batch_size if batch_size is None else int(batch_size)
    energy = bool(with_energy) and callable(getattr(ex, "embed_with_energy", None))
    ok, skipped = [], {}
    for s in samples:
        reason = ex.unsupported_reason(s)
        if reason is None:
            ok.append(s)
        else:
            skipped[s.id] = reason
    ids: list[str] = []
    feats: dict[str, list] = {layer: [] for layer in layers}
    energies: list[float] = []
    first_error: BaseException | None = None

    def take(batch, f, e):
        ids.extend(s.id for s in batch)
        for layer in layers:
            feats[layer].extend(f[layer])
        if energy:
            energies.extend(np.asarray(e, dtype=np.float64).tolist())

    saved, ex.batch_size = ex.batch_size, bs  # adapters batch their forward passes by it
    try:
        for start in range(0, len(ok), bs):
            batch = ok[start:start + bs]
            try:
                f, e = _forward(ex, batch, layers, energy)
            except Exception as exc:  # isolate the failing sample(s)
                first_error = first_error or exc
                for s in batch:
                    try:
                        f1, e1 = _forward(ex, [s], layers, energy)
                    except Exception as exc1:
                        skipped[s.id] = _reason(exc1)
                        continue
                    take([s], f1, e1)
                continue
            take(batch, f, e)
    finally:
        ex.batch_size = saved
    if ok and not ids and first_error is not None:
        raise first_error
    order = {s.id: i for i, s in enumerate(samples)}  # embedded ids in shard order (a retried batch too)
    if ids != sorted(ids, key=order.__getitem__):
        perm = sorted(range(len(ids)), key=lambda i: order[ids[i]])
        ids = [ids[i] for i in perm]
        feats = {layer: [v[i] for i in perm] for layer, v in feats.items()}
        energies = [energies[i] for i in perm] if energy else energies
    return ids, feats, skipped, (np.asarray(energies, dtype=np.float64) if energy else None)


class Handler:
    """Runs requests; keeps the last loaded model (one model per worker at a time)."""

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self._key: str | None = None
        self._extractor = None

    def extractor(self, model: str, options: dict[str, Any]):
        key = json.dumps([model, options], sort_keys=True, default=str)
        if key != self._key:
            from ..models import load

            self._extractor, self._key = None, None
            self._extractor = load(model, **options)
            self._key = key
            if self.threads is not None and "torch" in sys.modules:
                import torch

                torch.set_num_threads(int(self.threads))
        return self._extractor

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Run one request; return the reply (``output`` is the result file)."""
        op = req["op"]
        if op == "extract":
            return self._extract(req)
        if op == "energy":
            return self._energy(req)
        if op == "call":
            return self._call(req)
        from ..errors import InputError

        raise InputError(f"worker request op must be extract, energy or call; got {op!r}")

    def _extract(self, req):
        from .wire import pack_embedding, read_samples

        ds = read_samples(req["input"])
        ex = self.extractor(req["model"], req.get("options", {}))
        layers = [ex.resolve_layer(layer) for layer in req["layers"]]
        ids, feats, skipped, energies = embed_shard(ex, list(ds), layers, batch_size=req.get("batch_size"),
                                                    with_energy=bool(req.get("with_energy")))
        prov = ex.provenance() if req.get("provenance", True) else {}
        pack_embedding(req["output"], ids=ids, arrays=feats, skipped=skipped, energies=energies, provenance=prov)
        return {"output": req["output"], "n": len(ids)}

    def _energy(self, req):
        import numpy as np

        from .wire import read_samples

        ds = read_samples(req["input"])
        ex = self.extractor(req["model"], req.get("options", {}))
        ok = [s for s in ds if ex.supports(s)]
        energy = (np.asarray(ex.predict_energy([s.atoms for s in ok]), dtype=np.float64) if ok
                  else np.zeros(0, np.float64))
        np.savez(req["output"], ids=np.array([s.id for s in ok], dtype=str), energy=energy)
        return {"output": req["output"], "n": len(ok)}

    def _call(self, req):
        import pickle

        with open(req["input"], "rb") as fh:
            fn, args = pickle.load(fh)
        result = run_call(fn, args, threads=req.get("threads"))
        with open(req["output"], "wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return {"output": req["output"]}


def run_call(fn: str, args, *, threads: int | None = None):
    """``fn(*args)`` (``fn``: ``"module:function"``), with ``threads`` compiled-kernel and BLAS threads if given."""
    import importlib
    from contextlib import nullcontext

    module, _, attr = fn.partition(":")
    func = getattr(importlib.import_module(module), attr)
    if threads is None:
        return func(*args)
    from threadpoolctl import threadpool_limits

    old = os.environ.get("MATTERALIGN_THREADS")
    os.environ["MATTERALIGN_THREADS"] = str(int(threads))
    try:
        with threadpool_limits(limits=int(threads)) if threads else nullcontext():
            return func(*args)
    finally:
        if old is None:
            os.environ.pop("MATTERALIGN_THREADS", None)
        else:
            os.environ["MATTERALIGN_THREADS"] = old


def error_payload(exc: BaseException) -> dict[str, str]:
    """The JSON payload of an exception (a MatterAlignError keeps its class across processes)."""
    from ..errors import MatterAlignError

    if isinstance(exc, MatterAlignError):
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": "ModelError", "message": f"{type(exc).__name__}: {exc}"}


def rebuild_error(payload: dict[str, str]):
    """The worker's error as the same :class:`MatterAlignError` subclass, with the same message."""
    from .. import errors

    cls = getattr(errors, payload.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.MatterAlignError)):
        cls = errors.ModelError
    exc = cls.__new__(cls)
    Exception.__init__(exc, payload["message"])
    return exc


def load_plugins() -> list[str]:
    """Import the modules named in ``MATTERALIGN_PLUGINS`` (comma-separated), e.g. a module of your own that
    registers model adapters, so that workers on every machine know them too. Returns their names."""
    import importlib

    names = [m.strip() for m in os.environ.get("MATTERALIGN_PLUGINS", "").split(",") if m.strip()]
    for name in names:
        importlib.import_module(name)
    return names


def main() -> int:
    """Serve requests from stdin until it closes."""
    from .._warnings import install_worker_hook

    load_plugins()
    install_worker_hook()  # a study run counts the workers' warnings and shows them once at its end
    threads = os.environ.get("MATTERALIGN_THREADS")
    handler = Handler(threads=int(threads) if threads else None)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything an adapter prints goes to the log, not into the protocol
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        t0 = time.perf_counter()
        try:
            reply = {"id": req.get("id"), "ok": True, **handler.handle(req)}
        except Exception as exc:
            import traceback

            traceback.print_exc(file=sys.stderr)
            reply = {"id": req.get("id"), "ok": False, "error": error_payload(exc)}
        reply["seconds"] = time.perf_counter() - t0
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
