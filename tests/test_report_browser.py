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


def check_legibility(index, tmp_path, *, width: int = 1280, min_px: float = 8.0):
    """Open ``index`` at ``width`` px; every matteralign figure's smallest text, as rendered, is >= ``min_px``
    and every image link resolves. Returns ``[(src, rendered smallest text px), ...]``."""
    import urllib.parse
    from pathlib import Path

    driver = chrome_driver(tmp_path)
    try:
        driver.set_window_size(width, 1000)
        driver.get(index.resolve().as_uri())
        from selenium.webdriver.support.ui import WebDriverWait

        # lazy images load as a reader scrolls to them
        for i in range(driver.execute_script("return document.images.length;")):
            driver.execute_script(f"document.images[{i}].scrollIntoView();")
            WebDriverWait(driver, 30).until(lambda d, i=i: d.execute_script(
                f"const im = document.images[{i}]; return im.complete && im.naturalWidth > 0;"))
        driver.execute_script("window.scrollTo(0, 0);")
        rows = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth,"
            " i.getBoundingClientRect().width, i.getAttribute('data-min-font-px'),"
            " i.closest('a') ? i.closest('a').href : null]);"
        )
        links = driver.execute_script(
            "return Array.from(document.querySelectorAll('figure a')).map(a => a.href);")
    finally:
        driver.quit()
    out = []
    for src, natural, shown, font_px, _href in rows:
        assert natural > 0, f"figure {src} did not load"
        if font_px is not None:
            out.append((src, float(font_px) * shown / natural))
    small = [(s, round(px, 2)) for s, px in out if px < min_px]
    assert not small, f"figure text rendered below {min_px} px at {width} px width: {small}"
    missing = [h for h in links if h.startswith("file:") and not Path(urllib.parse.unquote(h[7:])).is_file()]
    assert not missing, f"links that do not resolve: {missing}"
    return out


def _matrix_report(tmp_path, n_models: int):
    """A report with the matrix analysis of ``n_models`` synthetic models."""
    from matteralign.analysis import AnalysisContext, get_analysis
    from matteralign.report import write_report

    rng = np.random.default_rng(0)
    names = [f"family{i % 4}-model-{i:02d}" for i in range(n_models)]
    rows = [("d", a, b, "cknna", '{"k": 25}', 400, float(rng.uniform(0, 1))) for a in names for b in names]
    pairs = pd.DataFrame(rows, columns=["dataset", "model_a", "model_b", "metric", "params", "n", "value"])
    models = {m: {"family": m.split("-")[0]} for m in names}
    out = tmp_path / "report"
    fig_dir = out / "figures" / "matrix"
    fig_dir.mkdir(parents=True)
    ctx = AnalysisContext(out_dir=fig_dir, datasets={}, embeddings={}, models=models, pairs=pairs,
                          per_model=pairs.iloc[:0], params={}, normalize="l2", seed=0)
    res = get_analysis("matrix")(ctx)
    return write_report([res], out_dir=out, study={"name": "t", "models": names}, provenance={})


@pytest.mark.parametrize("n_models", [8, 24, 60])
def test_report_figure_text_is_legible_at_1280_px(tmp_path, n_models):
    index = _matrix_report(tmp_path, n_models)
    measured = check_legibility(index, tmp_path)
    assert len(measured) == 2  # the full and the condensed matrix, both carrying their font size
    html = index.read_text()
    assert "Full-size image (SVG)" in html or "Full-size image (PNG)" in html
    assert "figures/matrix/matrix_d_cknna.png" in html and "CKNNA of every pair of models on d" in html


@pytest.mark.slow
def test_illegible_figure_is_detected(tmp_path):
    """The legibility check can fail: a figure squeezed to a tenth of its size is reported."""
    index = _matrix_report(tmp_path, 8)
    html = index.read_text().replace('<img src=', '<img style="width:10%" src=', 1)
    index.write_text(html)
    with pytest.raises(AssertionError, match="rendered below 8"):
        check_legibility(index, tmp_path)
