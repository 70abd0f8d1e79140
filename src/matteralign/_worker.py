"""Extraction worker run inside a model environment: ``<env>/bin/python -m matteralign._worker REQUEST.json``.

Reads the request written by :func:`matteralign.envs.extract_in_env` (store path, dataset file,
model, layer, adapter options, store options), builds the adapter and calls
:meth:`matteralign.store.Store.extract`. It talks to the parent through stdout lines:
``MATTERALIGN_PROGRESS <done> <total>``, then ``MATTERALIGN_RESULT <json summary>`` or
``MATTERALIGN_ERROR <json {type, message}>`` (exit code 2).
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    """Run one extraction request; return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    from .envs import raise_from_worker

    try:
        if len(args) != 1:
            from .errors import InputError

            raise InputError(f"usage: python -m matteralign._worker REQUEST.json; got {args!r}")
        with open(args[0]) as fh:
            req = json.load(fh)
        from .envs import read_dataset
        from .models import load
        from .store import Store

        ds = read_dataset(req["dataset"])
        extractor = load(req["model"], **req.get("options", {}))

        def progress(done: int, total: int) -> None:
            print(f"MATTERALIGN_PROGRESS {done} {total}", flush=True)

        summary = Store(req["store"]).extract(
            ds, extractor, layer=req.get("layer"), shard_size=req.get("shard_size", 256),
            batch_size=req.get("batch_size"), poolings=req.get("poolings", ["mean"]),
            save_atoms=bool(req.get("save_atoms", True)), progress=progress, overwrite=bool(req.get("overwrite", False)))
        print("MATTERALIGN_RESULT " + json.dumps(summary), flush=True)
        return 0
    except Exception as exc:  # reported to the parent, which re-raises the same MatterAlignError class
        from .errors import MatterAlignError

        if not isinstance(exc, MatterAlignError):
            import traceback

            traceback.print_exc(file=sys.stderr)
        print("MATTERALIGN_ERROR " + json.dumps(raise_from_worker(exc)), flush=True)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
