"""Run every benchmark in bench/: each ``bench/*.py`` that defines ``main()`` (``make bench``).

Each writes its results to ``bench/results/<name>.json``; tables are in bench/README.md.

    python bench/run_all.py            # all benchmarks
    python bench/run_all.py metrics    # only the named ones
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(names: list[str] | None = None) -> None:
    sys.path.insert(0, str(HERE))
    for path in sorted(HERE.glob("*.py")):
        if path.name == "run_all.py" or path.name.startswith("_") or (names and path.stem not in names):
            continue
        spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "main", None)):
            continue
        print(f"== {path.stem}", flush=True)
        t0 = time.perf_counter()
        module.main()
        print(f"== {path.stem} done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or None)
