"""One normalisation rule: a pair's value is the same number through the function, ``pairwise``,
``matteralign compare`` (arrays and ``--store``) and the study."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from matteralign.cli import main
from matteralign.metrics import cknna, information_imbalance, pairwise
from matteralign.models import get_spec
from matteralign.store import Store
from matteralign.study import Study

pytestmark = pytest.mark.slow

STUDY = {
    "name": "routes",
    "seed": 0,
    "models": ["composition", "element-random"],
    "datasets": [{"name": "g2", "n": 40}],
    "metrics": {"cknna": {"k": 5}, "information_imbalance": {"k": 2}},
    "model_metrics": {},
    "analyses": {},
}


def test_one_pair_four_routes(tmp_path):
    res = Study.from_dict({**STUDY, "out": str(tmp_path / "study")}).run(progress=False, report=False)
    store = Store(tmp_path / "study" / "store", mode="r")
    a, b = STUDY["models"]
    (ids_a, A), (ids_b, B) = (store.read("g2", m, get_spec(m).default_layer) for m in (a, b))
    assert ids_a == ids_b and len(ids_a) == 40
    np.save(tmp_path / "a.npy", A)
    np.save(tmp_path / "b.npy", B)
    for metric, k in (("cknna", 5), ("information_imbalance", 2)):
        fn = {"cknna": cknna, "information_imbalance": information_imbalance}[metric]
        routes = {"function": fn(A, B, k=k)}
        t = pairwise({a: A, b: B}, [(metric, {"k": k})])
        routes["pairwise"] = t.query("model_a == @a and model_b == @b")["value"].item()
        for kind, args in (
            ("compare", [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]),
            (
                "compare --store",
                ["--store", str(tmp_path / "study" / "store"), "--dataset", "g2", "--model", a, "--model", b],
            ),
        ):
            out = tmp_path / f"{metric}-{kind.replace(' ', '')}.json"
            main(["compare", *args, "-m", metric, "--param", f"{metric}.k={k}", "--out", str(out)])
            rows = json.loads(out.read_text())
            names = ("a", "b") if kind == "compare" else (a, b)
            routes[kind] = next(r["value"] for r in rows if (r["model_a"], r["model_b"]) == names)
        p = res.pairs
        routes["study"] = p[(p.metric == metric) & (p.model_a == a) & (p.model_b == b)]["value"].item()
        assert (p["normalize"] == "l2").all()
        ref = routes["function"]
        assert 0.01 < abs(ref) < 2  # a real value, not a degenerate one
        for route, v in routes.items():
            assert v == pytest.approx(ref, rel=1e-12, abs=1e-12), (metric, route, routes)
    # and normalize=None really is the arrays as given: a different number here
    assert cknna(A, B, k=5, normalize=None) != pytest.approx(cknna(A, B, k=5), abs=1e-6)
    assert isinstance(res.pairs, pd.DataFrame)
