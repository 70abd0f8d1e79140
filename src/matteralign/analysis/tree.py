"""A tree of models: CKNNA profiles → Jensen–Shannon distances → neighbour joining (paper Fig. 1F, App. A.1.3)."""

from __future__ import annotations

import numpy as np

from ..errors import InputError, MissingDependencyError
from ._common import (
    family_of,
    fmt,
    is_control,
    is_symmetric,
    n_phrase,
    order_models,
    pair_matrix,
    scored,
    select_params,
)
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "profiles", "tree_distance", "neighbour_joining", "family_clades"]


def profiles(C: np.ndarray, *, eps: float = 1e-3) -> np.ndarray:
    """Row profiles of a similarity matrix.

    .. math::

        R_i(j) = \\frac{C_{ij} + \\varepsilon}{\\sum_{j'} C_{ij'} + M\\varepsilon}

    Parameters
    ----------
    C : ndarray, shape (m, m)
        Non-negative similarities (the diagonal included). Column profiles are ``profiles(C.T)``.
    eps : float
        Pseudo-count added to every entry (> 0), so that no profile has a zero.

    Returns
    -------
    ndarray, shape (m, m)
        Each row is a probability distribution over the ``m`` models.
    """
    C = np.asarray(C, dtype=np.float64)
    if eps <= 0:
        raise InputError(f"tree: eps must be > 0; got {eps}")
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise InputError(f"tree: the similarity matrix must be square; got shape {C.shape}")
    if not np.isfinite(C).all() or (C < 0).any():
        raise InputError("tree: the similarity matrix must be finite and non-negative (clip it first)")
    m = C.shape[0]
    return (C + eps) / (C.sum(axis=1, keepdims=True) + m * eps)


def tree_distance(C: np.ndarray, *, alpha: float = 0.5, eps: float = 1e-3) -> np.ndarray:
    """Distance between models from the Jensen–Shannon divergence of their CKNNA profiles.

    .. math::

        D_{ij} = \\alpha \\sqrt{\\mathrm{JSD}_2(R_i, R_j)} + (1 - \\alpha) \\sqrt{\\mathrm{JSD}_2(K_i, K_j)}

    with :math:`R` the row profiles of :math:`C` and :math:`K` those of :math:`C^\\top` (see :func:`profiles`),
    and :math:`\\mathrm{JSD}_2` the Jensen–Shannon divergence in bits. ``scipy.spatial.distance.jensenshannon``
    with ``base=2`` returns :math:`\\sqrt{\\mathrm{JSD}_2}` (the JS distance), which is used directly.

    Parameters
    ----------
    C : ndarray, shape (m, m)
        CKNNA matrix without random controls, self similarities on the diagonal; negative entries (CKNNA can
        be slightly below 0) must be clipped to 0 by the caller.
    alpha : float in [0, 1]
        Weight of the row profiles. The paper does not give it; 0.5 weighs rows and columns equally.
    eps : float
        Pseudo-count of the profiles. The paper does not give it; 1e-3 by default.

    Returns
    -------
    ndarray, shape (m, m)
        Symmetric, zero diagonal, each entry in [0, 1].

    References
    ----------
    Edamadaka et al., arXiv:2512.03750, Appendix A.1.3.
    """
    from scipy.spatial.distance import jensenshannon

    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"tree: alpha must be in [0, 1]; got {alpha}")
    R = profiles(C, eps=eps)
    K = profiles(np.asarray(C, dtype=np.float64).T, eps=eps)
    m = R.shape[0]
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1, m):
            d = alpha * jensenshannon(R[i], R[j], base=2) + (1 - alpha) * jensenshannon(K[i], K[j], base=2)
            D[i, j] = D[j, i] = d
    return D


def neighbour_joining(D: np.ndarray, names: list[str]):
    """Neighbour-joining tree (Saitou & Nei 1987) of distance matrix ``D`` via scikit-bio.

    Returns
    -------
    skbio.TreeNode
        Unrooted tree (a trifurcation at the root); negative branch lengths are set to 0.
    """
    try:
        from skbio import DistanceMatrix
        from skbio.tree import nj
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("scikit-bio", "the model tree", "analysis") from exc
    if len(names) < 3:
        raise InputError(f"tree: neighbour joining needs at least 3 models; got {len(names)}")
    return nj(DistanceMatrix(np.asarray(D, dtype=np.float64), ids=list(names)), neg_as_zero=True)


def family_clades(tree, families: dict[str, str]) -> dict[str, bool]:
    """For each family with at least 2 members, whether it forms a split of the (unrooted) tree."""
    tips = frozenset(t.name for t in tree.tips())
    splits = set()
    for s in tree.subsets():
        splits.add(frozenset(s))
        splits.add(tips - frozenset(s))
    out = {}
    for fam in sorted(set(families.values())):
        members = frozenset(m for m, f in families.items() if f == fam and m in tips)
        if 2 <= len(members) < len(tips):
            out[fam] = members in splits or len(members) == len(tips) - 1
    return out


def _draw(ax, tree, ctx, title: str):
    from ._plot import model_styles

    styles = model_styles(ctx.models, [*ctx.models, *(tip.name for tip in tree.tips())])
    try:
        t = tree.root_at_midpoint()
    except Exception:  # noqa: BLE001 - e.g. zero-length trees: draw as given
        t = tree
    xs, ys = {}, {}
    tips = list(t.tips())
    for i, tip in enumerate(tips):
        ys[id(tip)] = float(i)
    for node in t.preorder():
        parent_x = xs.get(id(node.parent), 0.0) if node.parent is not None else 0.0
        xs[id(node)] = parent_x + max(float(node.length or 0.0), 0.0) if node.parent is not None else 0.0
    for node in t.postorder():
        if not node.is_tip():
            ys[id(node)] = float(np.mean([ys[id(c)] for c in node.children]))
    xmax = max(xs.values()) or 1.0
    for node in t.preorder():
        x, y = xs[id(node)], ys[id(node)]
        if node.parent is not None:
            ax.plot([xs[id(node.parent)], x], [y, y], color="#333333", lw=1.2)
        if not node.is_tip():
            cy = [ys[id(c)] for c in node.children]
            ax.plot([x, x], [min(cy), max(cy)], color="#333333", lw=1.2)
    for tip in tips:  # the family's colour, in the model's own shade and marker
        st = styles[tip.name]
        ax.plot([xs[id(tip)]], [ys[id(tip)]], ls="", marker=st["marker"], ms=6, color=st["color"], zorder=3)
        ax.text(xs[id(tip)] + 0.025 * xmax, ys[id(tip)], tip.name, va="center", ha="left", fontsize=8,
                color=st["color"], fontweight="bold")
    ax.set_xlim(-0.02 * xmax, xmax * 1.45)
    ax.set_ylim(-0.8, len(tips) - 0.2)
    ax.invert_yaxis()
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_xlabel("branch length (JS distance units, midpoint-rooted for drawing)")
    ax.set_title(title)


@register_analysis("tree", options=["alpha", "eps", "metric", "k", "score"])
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Neighbour-joining tree of the models per dataset, from their CKNNA profiles; Newick files.

    Options: ``alpha``, ``eps`` (:func:`tree_distance`), ``metric`` (default ``cknna``), ``k`` and ``score``:
    ``"value"`` (raw scores, default) or ``"calibrated"`` (profiles of the calibrated scores of the pairs table,
    so that agreement at chance level weighs nothing; self pairs are 1).
    """
    import pandas as pd

    from ._plot import family_legend, pyplot, safe_name, save

    plt = pyplot()
    alpha = float(ctx.params.get("alpha", 0.5))
    eps = float(ctx.params.get("eps", 1e-3))
    metric = str(ctx.params.get("metric", "cknna"))
    k = int(ctx.params.get("k", 25))
    score = str(ctx.params.get("score", "value"))
    what = f"calibrated {metric}" if score == "calibrated" else metric
    res = AnalysisResult(
        name="tree",
        title="Tree of models",
        summary=(
            f"As in the paper (App. A.1.3): the {what} matrix C without random controls, its row profiles "
            "R_i(j) = (C_ij + ε) / (Σ_j' C_ij' + Mε) and column profiles K_i (the same on Cᵀ), the distance "
            "D_ij = α·sqrt(JSD(R_i, R_j)) + (1 − α)·sqrt(JSD(K_i, K_j)) with JSD in bits, then neighbour "
            f"joining (scikit-bio). Here α = {alpha:g} and ε = {eps:g}: the paper does not give them. "
            "Negative similarities are clipped to 0 and self similarities missing from the table are set to 1. "
            "Two models are close when they agree with the rest of the zoo in the same way. Leaf labels are "
            "in the family's colour, a shade and marker per model; the drawing is rooted at the midpoint, the Newick file is the unrooted NJ tree."
        ),
    )
    if score == "calibrated":
        res.title = "Tree of models (calibrated scores)"
        res.summary += (" Built from calibrated scores (study option score = 'calibrated'): (s - tau) / (s_max - tau) "
                        "clipped to [0, 1] against each pair's permutation null, so a pair no more aligned than "
                        "chance contributes 0.")
    datasets = sorted(set(ctx.pairs["dataset"])) if len(ctx.pairs) else []
    for dataset in datasets:
        df = ctx.pairs[ctx.pairs["dataset"] == dataset]
        rows = scored(select_params(df, metric, prefer={"k": k}), score, analysis="tree")
        if rows.empty:
            res.findings.append(f"{dataset}: no {metric} results, no tree.")
            continue
        names = [m for m in order_models(ctx.models, set(rows["model_a"]) | set(rows["model_b"]))
                 if not is_control(ctx.models.get(m))]
        C = pair_matrix(rows, names, symmetric=is_symmetric(metric), diagonal=1.0)
        dropped = []
        while len(names) and not np.isfinite(C).all():
            worst = int(np.argmax((~np.isfinite(C)).sum(axis=0) + (~np.isfinite(C)).sum(axis=1)))
            dropped.append(names.pop(worst))
            C = np.delete(np.delete(C, worst, 0), worst, 1)
        if dropped:
            res.findings.append(f"{dataset}: left out of the tree for missing pairs: {', '.join(dropped)}.")
        if len(names) < 3:
            res.findings.append(f"{dataset}: fewer than 3 models without controls ({len(names)}); no tree.")
            continue
        D = tree_distance(np.clip(C, 0.0, None), alpha=alpha, eps=eps)
        tree = neighbour_joining(D, names)
        nwk = ctx.out_dir / f"tree_{safe_name(dataset)}.nwk"
        nwk.write_text(str(tree).strip() + "\n")
        res.files.append(nwk)
        res.tables[f"{dataset}/distance"] = pd.DataFrame(D, index=pd.Index(names, name="model"),
                                                         columns=names).reset_index()

        fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.32 * len(names) + 1.2)))
        _draw(ax, tree, ctx, f"{dataset}: neighbour-joining tree of {what} profiles")
        fams_present = list(dict.fromkeys(family_of(ctx.models, m) for m in names))
        family_legend(ax, ctx.models, fams_present, loc="lower right", title="family")
        res.figures.append(save(fig, ctx.out_dir / f"tree_{safe_name(dataset)}.png"))
        res.captions[res.figures[-1].name] = (
            f"{dataset}: neighbour-joining tree of the {len(names)} models (controls left out) from the "
            f"Jensen–Shannon distances of their {what} profiles; leaves in the family's colour, a shade and marker per model (Newick file below).")

        fams = {m: family_of(ctx.models, m) for m in names}
        clades = family_clades(tree, fams)
        if clades:
            ok = [f for f, v in clades.items() if v]
            res.findings.append(
                f"{dataset}: {len(ok)} of {len(clades)} multi-model families form their own clade"
                + (f" ({', '.join(ok)})" if ok else "")
                + (f"; split: {', '.join(f for f, v in clades.items() if not v)}" if len(ok) < len(clades) else "")
                + "."
            )
        off = D + np.diag(np.full(len(names), np.inf))
        i, j = np.unravel_index(np.argmin(off), off.shape)
        res.findings.append(f"{dataset}: the closest models in the tree distance are {names[i]} and {names[j]} "
                            f"(D = {fmt(D[i, j])}; {what} profiles on {n_phrase(ctx.pairs, dataset, metric)}).")
    if not res.figures and not res.findings:
        res.findings.append("No pair results were available, so no tree was built.")
    return res
