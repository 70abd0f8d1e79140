"""One plotting style for every analysis: family colours, heatmaps, saving.

matplotlib is imported inside the functions (Agg backend), so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._common import family_of, is_control

__all__ = [
    "DPI",
    "pyplot",
    "family_colors",
    "family_color",
    "FAMILY_COLORS",
    "model_colors",
    "model_styles",
    "label_points",
    "matrix_figsize",
    "CELL_FONT_PT",
    "heatmap",
    "save",
    "family_legend",
    "safe_name",
    "CONTROL_COLOR",
]

DPI = 110
CONTROL_COLOR = "#8c8c8c"
_PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
    "#8c564b", "#e377c2", "#bcbd22", "#393b79", "#637939", "#843c39",
]  # fmt: skip

_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend with the package style applied."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(_STYLE)
    return plt


def safe_name(s: str) -> str:
    """A file-name-safe version of ``s``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(s))


#: The colour of each known family, the same in every report (a family not listed here gets a palette colour
#: chosen by a hash of its name, so it too keeps its colour from one report to the next).
FAMILY_COLORS = {
    "chgnet": "#1f77b4", "sevennet": "#d62728", "mace": "#2ca02c", "orb": "#9467bd", "fairchem": "#ff7f0e",
    "equiformer_v2": "#8c564b", "ani": "#17becf", "mattergen": "#bcbd22", "descriptor": "#393b79",
    "cheminformatics": "#637939", "lm": "#e377c2", "chemical_lm": "#843c39", "protein_lm": "#7b4173",
    "llm": "#ad494a", "aurora": "#3182bd", "climax": "#31a354", "graphcast": "#756bb1",
    "inverse_folding": "#ce6dbd", "pet": "#e7ba52", "geom2vec": "#5254a3",
}  # fmt: skip

#: Markers that tell the models of one family apart (with shades of the family colour).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")


def family_color(family: str) -> str:
    """The fixed colour of ``family`` (:data:`FAMILY_COLORS`, else a palette colour by a stable hash)."""
    if family in FAMILY_COLORS:
        return FAMILY_COLORS[family]
    import hashlib

    return _PALETTE[int(hashlib.sha256(family.encode()).hexdigest(), 16) % len(_PALETTE)]


def family_colors(models: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Colour per family of ``models``: fixed across reports (:func:`family_color`); controls in grey."""
    out = {}
    for m, meta in models.items():
        fam = family_of(models, m)
        if not is_control(meta):
            out[fam] = family_color(fam)
    for m, meta in models.items():
        if is_control(meta):
            out.setdefault(family_of(models, m), CONTROL_COLOR)
    return dict(sorted(out.items()))


def model_colors(models: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """Colour of each model in ``names``: its family's colour in the model's own shade (controls in shades of
    grey), the same as in every other figure of the report (:func:`model_styles` over all of ``models``)."""
    styles = model_styles(models, [*models, *names])
    return [styles[m]["color"] for m in names]


def _shade(color: str, t: float) -> str:
    """``color`` darkened (t < 0) or lightened (t > 0) by the fraction ``|t|``."""
    import matplotlib.colors as mcolors

    rgb = np.array(mcolors.to_rgb(color))
    rgb = rgb + (1 - rgb) * t if t > 0 else rgb * (1 + t)
    return mcolors.to_hex(np.clip(rgb, 0, 1))


def model_styles(models: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> dict[str, dict[str, str]]:
    """``{model: {"color", "marker"}}``: the family's colour in distinct shades, and a distinct marker, for
    each model of a family (sorted by name, so a model keeps its style whatever else is in the report)."""
    fams: dict[str, list[str]] = {}
    for m in sorted(set(names)):
        fams.setdefault("(controls)" if is_control(models.get(m)) else family_of(models, m), []).append(m)
    out = {}
    for fam, members in fams.items():
        base = CONTROL_COLOR if fam == "(controls)" else family_color(fam)
        k = len(members)
        for i, m in enumerate(members):
            t = 0.0 if k == 1 else -0.4 + 0.65 * i / (k - 1)  # dark ... light (still legible as text on white)
            out[m] = {"color": _shade(base, t), "marker": MARKERS[i % len(MARKERS)]}
    return out


def label_points(ax, xs, ys, labels, *, fontsize: float = 8, **kw) -> list:
    """Label points without overlaps: adjustText moves the labels apart and draws leader lines."""
    from adjustText import adjust_text

    texts = [ax.text(x, y, str(t), fontsize=fontsize, color="#222222") for x, y, t in zip(xs, ys, labels, strict=True)]
    if texts:
        adjust_text(texts, x=list(xs), y=list(ys), ax=ax, arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.5},
                    **kw)
    return texts


def model_legend(ax, models: Mapping[str, Mapping[str, Any]], names: Sequence[str], **kw):
    """Add a legend of ``names`` to ``ax``, each in its :func:`model_styles` shade and marker, grouped by family
    (controls last), so the models of one family can be told apart."""
    from matplotlib.lines import Line2D

    styles = model_styles(models, [*models, *names])
    order = sorted(dict.fromkeys(names), key=lambda m: (is_control(models.get(m)), family_of(models, m), m))
    handles = [Line2D([], [], marker=styles[m]["marker"], ls="", color=styles[m]["color"], label=m) for m in order]
    kw.setdefault("frameon", False)
    kw.setdefault("fontsize", 8)
    return ax.legend(handles=handles, **kw)


def family_legend(ax, models: Mapping[str, Mapping[str, Any]], families: Sequence[str] | None = None, **kw):
    """Add a legend of family colours to ``ax``."""
    from matplotlib.lines import Line2D

    fc = family_colors(models)
    fams = list(families) if families is not None else list(fc)
    handles = [Line2D([], [], marker="s", ls="", color=fc.get(f, CONTROL_COLOR), label=f) for f in fams]
    kw.setdefault("frameon", False)
    return ax.legend(handles=handles, **kw)


def heatmap(
    ax,
    M: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str] | None = None,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    annotate: bool | None = None,
    cbar_label: str = "",
    row_colors: Sequence[str] | None = None,
    col_colors: Sequence[str] | None = None,
    title: str = "",
    marks: np.ndarray | None = None,
    value_format=None,
):
    """Draw matrix ``M`` on ``ax`` with a colour bar; NaN cells are left blank (light grey).

    Values are printed in the cells when ``annotate`` (default: at most 20 rows and columns), at
    :data:`CELL_FONT_PT` in white or black depending on the cell's luminance (size the figure with
    :func:`matrix_figsize`); a cell where ``marks`` (bool, same shape) is true gets a ``*``. Tick labels may
    be coloured (e.g. by family). ``value_format(v) -> str`` writes a cell's value (default ``f"{v:.2f}"``).
    """
    import matplotlib as mpl

    col_labels = list(row_labels) if col_labels is None else list(col_labels)
    M = np.asarray(M, dtype=float)
    finite = M[np.isfinite(M)]
    if vmin is None:
        vmin = float(finite.min()) if finite.size else 0.0
    if vmax is None:
        vmax = float(finite.max()) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1e-9
    cm = mpl.colormaps[cmap].with_extremes(bad="#eeeeee")
    im = ax.imshow(np.ma.masked_invalid(M), cmap=cm, vmin=vmin, vmax=vmax, aspect="equal",
                   interpolation="nearest")
    ax.set_xticks(range(len(col_labels)), labels=col_labels, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    if row_colors is not None:
        for t, c in zip(ax.get_yticklabels(), row_colors, strict=False):
            t.set_color(c)
    if col_colors is not None:
        for t, c in zip(ax.get_xticklabels(), col_colors, strict=False):
            t.set_color(c)
    if annotate is None:
        annotate = max(M.shape) <= 20
    if annotate:
        size = CELL_FONT_PT  # size the figure with matrix_figsize so that the values fit their cells
        norm = mpl.colors.Normalize(vmin=vmin, vmax=vmax)
        for i in range(M.shape[0]):
            for j in range(M.shape[1]):
                v = M[i, j]
                if not np.isfinite(v):
                    continue
                r, g, b, _ = cm(norm(v))
                lum = 0.299 * r + 0.587 * g + 0.114 * b
                star = "*" if marks is not None and marks[i, j] else ""
                text = value_format(v) if value_format is not None else f"{v:.2f}"
                ax.text(j, i, f"{text}{star}", ha="center", va="center", fontsize=size,
                        color="black" if lum > 0.5 else "white")
    cbar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cbar.ax.tick_params(labelsize=8)
    if cbar_label:
        cbar.set_label(cbar_label, fontsize=8)
    if title:
        ax.set_title(title)
    return im


#: Largest SVG kept beside a PNG (a bigger one, e.g. a map of many points, stays PNG only).
SVG_MAX_BYTES = 400_000


def min_font_pt(fig) -> float:
    """The smallest font size (pt) of any visible, non-empty text of ``fig``."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return float(min(sizes)) if sizes else 0.0


def save(fig, path: Path) -> Path:
    """Save ``fig`` as PNG at :data:`DPI` (tight bounding box), plus an SVG beside it when that stays small
    (:data:`SVG_MAX_BYTES`); close it and return the PNG's path.

    The PNG carries its smallest font size and its DPI as text chunks (``matteralign:min_font_pt``,
    ``matteralign:dpi``), so the report (and its legibility test) knows how large the text is drawn.
    """
    import io

    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"matteralign:min_font_pt": f"{min_font_pt(fig):g}", "matteralign:dpi": str(DPI)}
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white", metadata=meta)
    buf = io.BytesIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", facecolor="white")
    svg = path.with_suffix(".svg")
    if buf.tell() <= SVG_MAX_BYTES:
        svg.write_bytes(buf.getvalue())
    else:
        svg.unlink(missing_ok=True)
    plt.close(fig)
    return path


#: Font size of the values printed in heatmap cells, and the cell side that holds "-0.00" at that size.
CELL_FONT_PT = 8.0
CELL_IN = 0.40


def matrix_figsize(n_rows: int, n_cols: int, labels: Sequence[str] = (), *, colorbar: bool = True) -> tuple:
    """Figure size (inches) for an ``n_rows x n_cols`` heatmap whose cells hold their value at
    :data:`CELL_FONT_PT`, with room for tick labels (``labels``) and the colour bar."""
    chars = max((len(str(s)) for s in labels), default=8)
    label_in = 0.2 + chars * CELL_FONT_PT * 0.6 / 72
    w = n_cols * CELL_IN + label_in + (1.1 if colorbar else 0.2)
    h = n_rows * CELL_IN + label_in * 0.9 + 0.7
    return max(w, 3.5), max(h, 3.0)
