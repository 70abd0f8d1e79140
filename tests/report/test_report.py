from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from matteralign.analysis import AnalysisResult
from matteralign.report import glossary_rows, write_report


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.ids, self.text, self.stack = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if "id" in a:
            self.ids.append(a["id"])
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>; open: {self.stack[-3:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path, dpi=50)
    plt.close(fig)
    return path


def _results(tmp_path):
    inside = _png(tmp_path / "report" / "figures" / "alpha" / "a.png")
    outside = _png(tmp_path / "elsewhere" / "b.png")
    nwk = tmp_path / "elsewhere" / "t.nwk"
    nwk.write_text("((a,b),c);\n")
    r1 = AnalysisResult(
        name="alpha",
        title="Alpha <script>alert(1)</script> & co",
        summary="First paragraph with <b>tags</b>.\n\nSecond paragraph.",
        figures=[inside, outside],
        tables={"molecules/cknna": pd.DataFrame({"model": ["x<y", "z"], "value": [0.123456789, np.nan]})},
        findings=["max |CKNNA| 0.021 & \"quoted\" <tag>"],
        files=[nwk],
    )
    r2 = AnalysisResult(name="beta", title="Beta", summary="", tables={})
    return [r1, r2]


def test_report_structure_images_and_escaping(tmp_path):
    out = tmp_path / "report"
    study = {"name": "demo & <test>", "seed": 3, "normalize": "l2", "models": ["x<y", "z"],
             "metrics": {"cknna": {"k": 25}, "mutual_knn": {"k": 10}},
             "model_metrics": {"intrinsic_dimension": [{"method": "twonn"}]},
             "datasets": [{"name": "molecules", "n": 240}]}
    prov = {"environment": {"python": "3.11", "numpy": "2"}, "models": {"molecules/x<y": {"hash": "abc"}},
            "datasets": {"molecules": {"fingerprint": "f00"}}, "timings_s": {"total": 1.5},
            "analysis_failures": {"gamma": "Traceback <boom>"}, "study_toml": 'name = "demo & <test>"\n'}
    index = write_report(_results(tmp_path), out_dir=out, study=study, provenance=prov)
    assert index == out / "index.html"
    html = index.read_text()
    p = _Collect()
    p.feed(html)
    p.close()
    assert not p.stack or p.stack == ["html"] or p.stack == []
    # every image exists on disk, relative path, and the outside figure was copied in
    assert len(p.imgs) == 2
    for src in p.imgs:
        assert not src.startswith("/") and (out / src).is_file()
    assert "figures/alpha/b.png" in p.imgs
    # every section present, TOC links resolve
    for sid in ("run", "alpha", "beta", "failures", "glossary", "provenance"):
        assert sid in p.ids
    assert {f"#{s}" for s in ("alpha", "beta", "glossary", "provenance")} <= set(p.links)
    # table CSV link and file link exist
    files = [h for h in p.links if not h.startswith("#")]
    assert any(h.endswith(".csv") for h in files) and any(h.endswith(".nwk") for h in files)
    for h in files:
        assert (out / h).is_file(), h
    # escaping: no raw markup from user text, but the text itself is there
    assert "<script>" not in html and "<tag>" not in html and "<b>tags</b>" not in html
    assert "&lt;script&gt;" in html and "&lt;boom&gt;" in html
    text = "".join(p.text)
    assert 'max |CKNNA| 0.021 & "quoted" <tag>' in text
    assert "x<y" in text
    # 4 significant digits in tables
    assert "0.1235" in html and "0.123456789" not in html
    # header lists what was run; the study file is shown verbatim
    assert "molecules (N = 240)" in text and "cknna (k=25)" in text
    assert 'name = "demo & <test>"' in text


def test_glossary_comes_from_registry():
    from matteralign.metrics import METRICS

    rows = glossary_rows(["cknna", "not-a-metric"])
    assert rows[0]["name"] == "cknna"
    spec = METRICS["cknna"]
    assert rows[0]["range"] == f"[{spec.bounds[0]:g}, {spec.bounds[1]:g}]"
    assert rows[0]["direction"] == "higher = more aligned"
    assert len(glossary_rows(None)) == len(METRICS)
