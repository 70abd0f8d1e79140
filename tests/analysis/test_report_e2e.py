from __future__ import annotations

import re

from matteralign.analysis import get_analysis
from matteralign.report import write_report


def test_all_analyses_render_into_one_report(ctx, tmp_path):
    out = tmp_path / "report"
    results = []
    for name in ("matrix", "tree", "dimension", "imbalance", "ood"):
        ctx.out_dir = out / "figures" / name
        ctx.out_dir.mkdir(parents=True)
        results.append(get_analysis(name)(ctx))
    index = write_report(results, out_dir=out, study={"name": "synthetic"}, provenance={})
    html = index.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    # matrix: one full and one condensed figure per dataset and metric (2 x 3 x 2)
    assert len(srcs) == sum(len(r.figures) for r in results) == 12 + 2 + 2 + 2 + 1
    assert all((out / s).is_file() for s in srcs)
    captions = re.findall(r"<figcaption>(.*?) <a ", html)
    assert len(captions) == len(srcs) and not any(c.endswith(".png") for c in captions)
    for r in results:
        assert f'id="{r.name}"' in html
        for f in r.findings:
            assert f.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html
