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
    "model_colors",
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


def family_colors(models: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Colour per family: a fixed palette over the sorted non-control families; controls in grey."""
    fams = sorted({family_of(models, m) for m, meta in models.items() if not is_control(meta)})
    out = {f: _PALETTE[i % len(_PALETTE)] for i, f in enumerate(fams)}
    for m, meta in models.items():
        if is_control(meta):
            out.setdefault(family_of(models, m), CONTROL_COLOR)
    return out


def model_colors(models: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """Family colour of each model in ``names`` (controls grey)."""
    fc = family_colors(models)
    return [CONTROL_COLOR if is_control(models.get(m)) else fc.get(family_of(models, m), "#000000") for m in names]


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
):
    """Draw matrix ``M`` on ``ax`` with a colour bar; NaN cells are left blank (light grey).

    Values are printed in the cells when ``annotate`` (default: at most 20 rows and columns), in white or
    black depending on the cell's luminance. Tick labels may be coloured (e.g. by family).
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
        size = 7 if max(M.shape) <= 12 else 5.5
        norm = mpl.colors.Normalize(vmin=vmin, vmax=vmax)
        for i in range(M.shape[0]):
            for j in range(M.shape[1]):
                v = M[i, j]
                if not np.isfinite(v):
                    continue
                r, g, b, _ = cm(norm(v))
                lum = 0.299 * r + 0.587 * g + 0.114 * b
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=size,
                        color="black" if lum > 0.5 else "white")
    cbar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cbar.ax.tick_params(labelsize=7)
    if cbar_label:
        cbar.set_label(cbar_label, fontsize=8)
    if title:
        ax.set_title(title)
    return im


def save(fig, path: Path) -> Path:
    """Save ``fig`` as PNG at :data:`DPI` (tight bounding box), close it and return ``path``."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path
