"""CKNNA as a function of the neighbour count k, and how stable the ranking of models is across k (paper Fig. A1)."""

from __future__ import annotations

import numpy as np

from ._common import family_of, fmt, is_control, order_models
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "DEFAULT_KS", "cknna_sweep", "cknna_sweep_pairs"]

#: Share of a dataset's samples a model must embed to be in the core set of the sweep (as the measure stage).
_CORE_COVERAGE = 0.9

#: Neighbour counts swept by default (values >= n are skipped).
DEFAULT_KS = (2, 10, 25, 50, 100)


def cknna_sweep(reps: dict[str, np.ndarray], ks, *, normalize: str = "l2"):
    """Tidy CKNNA values of every ordered model pair at every ``k`` (one kNN search per model).

    Parameters
    ----------
    reps : dict of str -> ndarray, shape (n, d_m)
        Raw (un-normalised) representations of the same samples in the same order.
    ks : sequence of int
        Neighbour counts, each < n.
    normalize : str
        Row normalisation applied once per model before the kNN search.

    Returns
    -------
    pandas.DataFrame
        Columns ``model_a, model_b, k, value`` (self pairs excluded).
    """
    from ..metrics import pairwise, prepare

    caches = {m: prepare(X, k_max=max(ks), normalize=normalize, name=m) for m, X in reps.items()}
    tab = pairwise(caches, [("cknna", {"k": int(k)}) for k in ks], normalize=None)
    tab = tab[tab["model_a"] != tab["model_b"]].copy()
    from ._common import parse_params

    tab["k"] = [int(parse_params(p)["k"]) for p in tab["params"]]
    return tab[["model_a", "model_b", "k", "value"]].reset_index(drop=True)


def cknna_sweep_pairs(embs, names, ks, *, normalize: str = "l2", n_max: int | None = None, seed: int = 0):
    """CKNNA of every model pair at every ``k``, each pair on the samples **both** models embedded.

    Parameters
    ----------
    embs : dict of str -> Embedding
        The models' pooled representations (``ids``, ``X``), possibly of different samples.
    names : sequence of str
        The models, in the order of the table.
    ks : sequence of int
        Neighbour counts; a pair skips every ``k >= n_ab - 1`` (``n_ab``: its shared samples).
    normalize : str
        Row normalisation applied before the kNN search.
    n_max : int, optional
        At most this many shared samples per pair (a seeded subset, ``default_rng([seed, i, j])``).

    Returns
    -------
    pandas.DataFrame
        Columns ``model_a, model_b, k, value, n`` (both orders of each pair, self pairs excluded).
    """
    import pandas as pd

    frames = []
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            b = names[j]
            shared = set(embs[b].ids)
            ids = [s for s in embs[a].ids if s in shared]
            if n_max is not None and len(ids) > int(n_max):
                pick = np.random.default_rng([seed, i, j]).choice(len(ids), int(n_max), replace=False)
                ids = [ids[x] for x in np.sort(pick)]
            kk = [k for k in ks if 1 <= k < len(ids) - 1]
            if not kk:
                continue
            tab = cknna_sweep({a: embs[a].aligned(ids), b: embs[b].aligned(ids)}, kk, normalize=normalize)
            frames.append(tab.assign(n=len(ids)))
    if not frames:
        return pd.DataFrame(columns=["model_a", "model_b", "k", "value", "n"])
    return pd.concat(frames, ignore_index=True)


@register_analysis("ksweep", options=["ks", "k_ref", "k", "n_max", "samples"])
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Mean CKNNA per model at each k and the Spearman/Kendall rank agreement with the reference k.

    Options: ``ks``, ``k_ref`` (or ``k``), ``n_max`` (at most this many samples) and ``samples``: ``"core"``
    (every value on the samples all core models embedded), ``"pairs"`` (each pair on the samples both of its
    models embedded, every model kept) or ``"auto"`` (default: the core set, unless it is too small for some
    requested k that the per-pair intersections allow; the figure and the tables say which).
    """
    import pandas as pd
    from scipy.stats import kendalltau, spearmanr

    from ._plot import model_styles, pyplot, safe_name, save

    plt = pyplot()
    ks_req = [int(k) for k in ctx.params.get("ks", DEFAULT_KS)]
    k_ref = int(ctx.params.get("k_ref", ctx.params.get("k", 25)))
    n_max = ctx.params.get("n_max")
    mode = str(ctx.params.get("samples", "auto"))
    if mode not in ("auto", "core", "pairs"):
        from ..errors import InputError

        raise InputError(f"ksweep: samples must be 'auto', 'core' or 'pairs'; got {mode!r}")
    res = AnalysisResult(
        name="ksweep",
        title="Sensitivity of CKNNA to k",
        summary=(
            f"CKNNA recomputed for k in {sorted(set(ks_req))} (values ≥ the number of samples are skipped) on "
            "the samples every model embedded. Each model is scored by its mean CKNNA to the other (non-control) "
            f"models; the ranking of the models at each k is compared with the ranking at k = {k_ref} by "
            "Spearman's ρ and Kendall's τ (1 = same order). The paper reports CKNNA rising with k and a nearly "
            "unchanged ranking (Fig. A1). Random controls are drawn dashed and left out of the rankings."
        ),
    )
    scores_rows, stab_rows = [], []
    rng = np.random.default_rng(ctx.seed)
    pair_rows = []
    for dataset in sorted(ctx.embeddings):
        embs = all_embs = ctx.embeddings[dataset]
        if len(embs) < 3:
            res.findings.append(f"{dataset}: fewer than 3 models, no k sweep.")
            continue
        # the core set, as the measure stage: models that embed at least 90 % of the samples; a model that skips
        # more (e.g. ANI-1x beyond H, C, N, O) would shrink the common samples to a handful and cap k
        n_total = max(len(e.ids) for e in embs.values())
        core_note = None
        partial = sorted(m for m, e in embs.items() if len(e.ids) < _CORE_COVERAGE * n_total)
        if len(embs) - len(partial) >= 3:
            embs = {m: e for m, e in embs.items() if m not in partial}
            if partial:
                core_note = (f"{dataset}: k sweep on the samples of the {len(embs)} core models; left out "
                             f"(each embeds < {_CORE_COVERAGE:.0%} of the samples): {', '.join(partial)}.")
        common = set.intersection(*(set(e.ids) for e in embs.values()))
        ids = [i for i in next(iter(embs.values())).ids if i in common]
        if n_max is not None and len(ids) > int(n_max):
            ids = [ids[i] for i in np.sort(rng.choice(len(ids), int(n_max), replace=False))]
        n = len(ids)
        per_pair = mode == "pairs"
        if mode == "auto":  # the core set is too small when it drops a requested k that the pairs allow
            all_names = list(all_embs)
            pair_n = [len(set(all_embs[a].ids) & set(all_embs[b].ids))
                      for i, a in enumerate(all_names) for b in all_names[i + 1:]]
            n_pairs = int(np.median(pair_n))
            if n_max is not None:
                n_pairs = min(n_pairs, int(n_max))
            per_pair = any(n - 1 <= k < n_pairs - 1 for k in ks_req)
        if per_pair:
            embs = all_embs
            n = int(np.median([len(set(embs[a].ids) & set(embs[b].ids)) for a in embs for b in embs if a < b]))
            if n_max is not None:
                n = min(n, int(n_max))
        ks = sorted({k for k in ks_req if 1 <= k < n - 1})
        if k_ref not in ks and k_ref < n - 1:
            ks = sorted(set(ks) | {k_ref})
        if len(ks) < 2:
            res.findings.append(f"{dataset}: n = {n} leaves fewer than 2 values of k, no k sweep.")
            continue
        names = order_models(ctx.models, embs)
        if per_pair:
            tab = cknna_sweep_pairs(embs, names, ks, normalize=ctx.normalize, n_max=n_max, seed=ctx.seed)
            pair_rows.append(tab.assign(dataset=dataset))
            n_lo, n_hi = int(tab["n"].min()), int(tab["n"].max())
            n_text = f"n = {n_lo}–{n_hi} per pair" if n_lo != n_hi else f"n = {n_lo} per pair"
            res.findings.append(
                f"{dataset}: the samples every model embedded ({len(ids)}) are too few for k up to "
                f"{max(ks_req)}; each pair is measured on the samples both of its models embedded ({n_text}), "
                "and a pair with too few shared samples for a k is left out at that k.")
            sample_set = "per-pair intersections"
        else:
            tab = cknna_sweep({m: embs[m].aligned(ids) for m in names}, ks, normalize=ctx.normalize)
            n_text = f"n = {n}"
            sample_set = "core set"
            if core_note:
                res.findings.append(core_note)
        real = [m for m in names if not is_control(ctx.models.get(m))]
        score = {}
        for k in ks:
            sub = tab[tab["k"] == k]
            # symmetrise (a, b) and (b, a), then average each model's values over its real partners
            lo = sub[["model_a", "model_b"]].min(axis=1)
            hi = sub[["model_a", "model_b"]].max(axis=1)
            sym = sub.assign(a=lo, b=hi).groupby(["a", "b"])["value"].mean().to_dict()
            for m in names:
                v = [sym[(min(m, p), max(m, p))] for p in real if p != m and (min(m, p), max(m, p)) in sym]
                score[(k, m)] = float(np.mean(v)) if v else np.nan
        ref = np.array([score[(k_ref, m)] for m in real]) if k_ref in ks else None
        for k in ks:
            vals = np.array([score[(k, m)] for m in real])
            order = (-vals).argsort().argsort() + 1
            for m, v, r in zip(real, vals, order, strict=True):
                scores_rows.append((dataset, k, m, family_of(ctx.models, m), v, int(r)))
            for m in names:
                if m not in real:
                    scores_rows.append((dataset, k, m, family_of(ctx.models, m), score[(k, m)], None))
            if ref is not None and len(real) >= 3:
                rho = float(spearmanr(vals, ref).statistic)
                tau = float(kendalltau(vals, ref).statistic)
            else:
                rho = tau = np.nan
            n_k = int(tab.loc[tab["k"] == k, "n"].min()) if per_pair else n
            stab_rows.append((dataset, k, n_k, len(real), float(np.nanmean(vals)), rho, tau, sample_set))

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.0), gridspec_kw={"width_ratios": [1.6, 1]})
        styles = model_styles(ctx.models, names)  # family colour, a shade and a marker per model of the family
        for m in names:
            y = [score[(k, m)] for k in ks]
            ctrl = is_control(ctx.models.get(m))
            ax1.plot(ks, y, marker=styles[m]["marker"], ms=4.5, lw=1.3, ls="--" if ctrl else "-",
                     color=styles[m]["color"], label=m)
        ax1.set_xscale("log")
        ax1.set_xticks(ks, labels=[str(k) for k in ks])
        ax1.minorticks_off()
        ax1.set_xlabel("k (neighbours)")
        ax1.set_ylabel("mean CKNNA to the other models")
        ax1.set_title(f"{dataset}: CKNNA vs k ({n_text}" + (", per-pair intersections)" if per_pair else ")"))
        ax1.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8,
                   ncol=1 if len(names) <= 18 else 2)
        st = [r for r in stab_rows if r[0] == dataset]
        ax2.plot([r[1] for r in st], [r[5] for r in st], marker="o", label="Spearman ρ", color="#1f77b4")
        ax2.plot([r[1] for r in st], [r[6] for r in st], marker="s", label="Kendall τ", color="#d62728")
        ax2.axvline(k_ref, color="#999999", lw=0.8, ls=":")
        ax2.set_xscale("log")
        ax2.set_xticks(ks, labels=[str(k) for k in ks])
        ax2.minorticks_off()
        ax2.set_ylim(-1.05, 1.05)
        ax2.set_xlabel("k (neighbours)")
        ax2.set_ylabel(f"rank agreement with k = {k_ref}")
        ax2.set_title("stability of the model ranking")
        ax2.legend(frameon=False, loc="lower left")
        fig.tight_layout()
        path = save(fig, ctx.out_dir / f"ksweep_{safe_name(dataset)}.png")
        res.figures.append(path)
        where = (f"each pair on the samples both of its models embedded, {n_text}; the samples every model "
                 f"embedded ({len(ids)}) are too few for the sweep" if per_pair
                 else f"n = {n} samples every model embedded")
        res.captions[path.name] = (
            f"{dataset} ({where}): left, each model's mean CKNNA to the other real "
            "models at each k (colour = family, shade and marker = model, dashed = control); right, agreement "
            f"of the model ranking at each k with the ranking at k = {k_ref}."
        )

    scores = pd.DataFrame(scores_rows, columns=["dataset", "k", "model", "family", "mean_cknna", "rank"])
    stab = pd.DataFrame(stab_rows, columns=["dataset", "k", "n", "n_models", "mean_cknna", "spearman_rho",
                                            "kendall_tau", "samples"])
    if len(stab):
        res.tables["scores"] = scores
        res.tables["rank_stability"] = stab
    if pair_rows:
        res.tables["pairs"] = pd.concat(pair_rows, ignore_index=True)[["dataset", "model_a", "model_b", "k", "n",
                                                                       "value"]]
    for dataset, g in stab.groupby("dataset", sort=True):
        g = g.sort_values("k")
        others = g[g["k"] != k_ref]
        if others["spearman_rho"].notna().any():
            res.findings.append(
                f"{dataset} (n = {int(g['n'].iloc[0])}): across k = {', '.join(str(k) for k in g['k'])}, the "
                "Spearman ρ of the model ranking "
                f"vs k = {k_ref} is at least {fmt(others['spearman_rho'].min())} "
                f"(Kendall τ at least {fmt(others['kendall_tau'].min())})."
            )
        mono = bool(np.all(np.diff(g["mean_cknna"].to_numpy()) > 0))
        res.findings.append(
            f"{dataset} (n = {int(g['n'].iloc[0])}): mean CKNNA over real models goes from "
            f"{fmt(g['mean_cknna'].iloc[0])} at k = "
            f"{g['k'].iloc[0]} to {fmt(g['mean_cknna'].iloc[-1])} at k = {g['k'].iloc[-1]}"
            f" ({'rising at every step' if mono else 'not monotone'})."
        )
    return res
