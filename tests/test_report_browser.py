"""The report opened in headless Chromium: every figure loads, the page logs no errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matteralign.analysis import AnalysisResult

from .browser import chrome_driver


def _figure(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.arange(5), np.arange(5) ** 2)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


def check_report_in_browser(index, tmp_path):
    """Open ``index`` in Chromium; assert every <img> decoded and the console has no errors."""
    driver = chrome_driver(tmp_path)
    try:
        driver.get(index.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
        )
        title = driver.title
        logs = driver.get_log("browser")
    finally:
        driver.quit()
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert not broken, f"figures that did not load: {broken}"
    errors = [entry["message"] for entry in logs if entry["level"] == "SEVERE"]
    assert not errors, f"the page logged errors: {errors}"
    return images, title


def test_report_figures_load_without_console_errors(tmp_path):
    from matteralign.report import write_report

    figdir = tmp_path / "report" / "figures" / "demo"
    figdir.mkdir(parents=True)
    res = AnalysisResult(
        name="demo",
        title="A <demo> & its figure",
        summary="Shows a parabola.",
        figures=[_figure(figdir / "a.png"), _figure(figdir / "b.png")],
        tables={"values": pd.DataFrame({"model": ["a", "b"], "value": [0.123456, 0.5]})},
        findings=["the value of b is 0.5"],
    )
    index = write_report([res], out_dir=tmp_path / "report", study={"name": "t", "models": ["a", "b"]},
                         provenance={"environment": {"python": "3"}})
    images, title = check_report_in_browser(index, tmp_path)
    assert len(images) >= 2
    assert title


@pytest.mark.slow
def test_a_broken_figure_is_detected(tmp_path):
    """The check itself can fail: a missing image file is reported."""
    html = tmp_path / "index.html"
    html.write_text('<html><head><title>x</title></head><body><img src="missing.png"></body></html>')
    with pytest.raises(AssertionError, match="did not load"):
        check_report_in_browser(html, tmp_path)
