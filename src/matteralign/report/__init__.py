"""The static HTML report of a study: one self-contained folder, no server, no JavaScript.

:func:`write_report` turns the :class:`~matteralign.analysis.AnalysisResult` list of a study into
``out_dir/index.html`` with the figures as files beside it, every table as HTML plus a CSV link,
the provenance of every number and a glossary generated from the metric registry.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._template import esc, json_block, kv_table, page, tag

__all__ = ["write_report", "glossary_rows"]

_MAX_TABLE_ROWS = 300


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(s))


def _rel(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()


def _place(path: Path, out_dir: Path, sub: str) -> str:
    """Relative link to ``path``; files outside ``out_dir`` are copied under ``out_dir/sub`` first."""
    path = Path(path)
    try:
        path.resolve().relative_to(out_dir.resolve())
        return _rel(path, out_dir)
    except ValueError:
        dest = out_dir / sub / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            shutil.copy2(path, dest)
        return _rel(dest, out_dir)


def _fmt4(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return ""
        return f"{x:.4g}"
    return str(x)


def _table_html(df, *, name: str, tname: str, out_dir: Path, tables_dir: Path | None) -> str:
    import pandas as pd

    csv = None
    if tables_dir is not None:
        cand = (Path(tables_dir) / "analysis" / name / tname).with_suffix(".csv")
        if cand.exists():
            csv = cand
    if csv is None:
        csv = out_dir / "tables" / _safe(name) / f"{_safe(tname)}.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(csv, index=False)
    shown = df if len(df) <= _MAX_TABLE_ROWS else df.head(_MAX_TABLE_ROWS)
    if not isinstance(shown, pd.DataFrame):  # pragma: no cover
        shown = pd.DataFrame(shown)
    body = shown.to_html(index=False, escape=True, float_format=lambda v: _fmt4(float(v)), na_rep="",
                         classes="data", border=0)
    note = f" (first {_MAX_TABLE_ROWS} of {len(df)} rows)" if len(df) > _MAX_TABLE_ROWS else ""
    return (
        tag("h3", esc(tname))
        + tag("div", body, class_="tablewrap")
        + tag("p", f'{tag("a", "CSV", href=_rel(csv, out_dir))}{esc(note)} · {len(df)} rows × {df.shape[1]} columns',
              class_="small muted")
    )


def glossary_rows(names: Sequence[str] | None = None) -> list[dict[str, str]]:
    """One row per registered metric (``names`` first, in that order; all registered when None).

    Each row has ``name, description, range, direction, meaning, symmetric, defaults, reference``, all taken
    from :data:`matteralign.metrics.METRICS`.
    """
    try:
        from ..metrics import METRICS
    except ImportError:  # pragma: no cover
        return []
    keys = [n for n in (names or []) if n in METRICS] or list(METRICS)
    rows = []
    for n in keys:
        s = METRICS[n]
        lo, hi = s.bounds
        rng = f"[{lo:g}, {hi:g}]"
        if s.arity == 1 or s.higher_is_better is None:
            direction = "not a similarity (a property of one representation)"
            meaning = f"values in {rng}; compare across models, not as agreement"
        elif s.higher_is_better:
            direction = "higher = more aligned"
            zero = 0.0 if lo <= 0.0 <= hi else lo
            meaning = f"{zero:g}: no shared structure (noise); {hi:g}: identical structure"
            if lo < 0:
                meaning += f"; small negative values (down to {lo:g}) are estimator noise around 0"
        else:
            direction = "lower = more shared information"
            meaning = f"{lo:g}: the first representation fully predicts the second; about 1: no information"
        if s.self_value is not None:
            meaning += f"; a representation against itself gives {s.self_value:g}"
        rows.append({
            "name": s.name,
            "description": s.description,
            "range": rng,
            "direction": direction,
            "meaning": meaning,
            "symmetric": "n/a" if s.arity == 1 else ("yes" if s.symmetric else "no (direction matters)"),
            "defaults": ", ".join(f"{k}={v}" for k, v in dict(s.params).items()) or "–",
            "invariances": ", ".join(sorted(s.invariances)) or "–",
            "reference": s.reference,
        })
    return rows


def _study_header(study: Mapping[str, Any], results: Sequence[Any]) -> str:
    datasets = study.get("datasets") or []
    ds_txt = ", ".join(
        f"{d.get('name')} (N = {d.get('n', '?')})" if isinstance(d, Mapping) else str(d) for d in datasets
    )
    models = list(study.get("models") or [])
    metrics = study.get("metrics") or {}
    mm = study.get("model_metrics") or {}
    met_txt = "; ".join(
        f"{k} ({', '.join(f'{a}={b}' for a, b in dict(v).items())})" if isinstance(v, Mapping) and v else str(k)
        for k, v in (metrics.items() if isinstance(metrics, Mapping) else ((m, {}) for m in metrics))
    )
    mm_txt = "; ".join(
        f"{k} ({' | '.join(', '.join(f'{a}={b}' for a, b in dict(p).items()) for p in v)})"
        if isinstance(v, (list, tuple)) else str(k)
        for k, v in (mm.items() if isinstance(mm, Mapping) else [])
    )
    k = None
    if isinstance(metrics, Mapping) and isinstance(metrics.get("cknna"), Mapping):
        k = metrics["cknna"].get("k")
    items = [
        ("study", study.get("name", "")),
        ("datasets", ds_txt or "–"),
        ("models", f"{len(models)}: {', '.join(map(str, models))}" if models else "–"),
        ("pair metrics", met_txt or "–"),
        ("single-model measures", mm_txt or "–"),
        ("sample size N", ", ".join(str(d.get("n")) for d in datasets if isinstance(d, Mapping)) or "–"),
        ("CKNNA k", k if k is not None else "–"),
        ("normalisation", study.get("normalize", "–")),
        ("seed", study.get("seed", "–")),
        ("analyses", ", ".join(r.name for r in results) or "–"),
    ]
    dl = "".join(f"<dt>{esc(a)}</dt><dd>{esc(b)}</dd>" for a, b in items)
    return f'<dl class="run">{dl}</dl>'


def _study_toml(study: Mapping[str, Any], provenance: Mapping[str, Any], out_dir: Path) -> str:
    text = provenance.get("study_toml")
    if not text:
        beside = out_dir.parent / "study.toml"
        if beside.exists():
            text = beside.read_text()
    if text:
        return tag("pre", esc(text))
    return tag("p", "The study file was not available; the resolved configuration:", class_="small muted") + \
        json_block(study)


def _png_info(path: Path) -> dict[str, Any]:
    """Pixel size and the text chunks matteralign writes into its PNGs (smallest font, DPI)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            info = {"width": im.width, "height": im.height, **{k: v for k, v in im.info.items() if isinstance(v, str)}}
    except Exception:  # not a PNG we can read: shown without size hints
        return {}
    return info


def _figure_html(fig: Path, out_dir: Path, r: Any, caption: str | None) -> str:
    """One figure: shown at its own pixel size (a wide one scrolls sideways instead of shrinking, so its text
    keeps its size), linked to the full-size image (the SVG beside it when there is one), with a caption."""
    sub = f"figures/{_safe(r.name)}"
    src = _place(fig, out_dir, sub)
    svg = fig.with_suffix(".svg")
    full = _place(svg, out_dir, sub) if svg.is_file() else src
    info = _png_info(fig) if fig.suffix.lower() == ".png" else {}
    attrs = f'src="{esc(src)}" alt="{esc(caption or fig.stem)}" loading="lazy"'
    if info.get("width"):
        attrs += f' width="{info["width"]}" height="{info["height"]}"'
    pt, dpi = info.get("matteralign:min_font_pt"), info.get("matteralign:dpi")
    if pt and dpi:
        attrs += f' data-min-font-px="{float(pt) * float(dpi) / 72:.2f}"'
    kind = "SVG" if full != src else "PNG"
    text = esc(caption) if caption else esc(f"{r.title or r.name}: {fig.stem.replace('_', ' ')}")
    cap = tag("figcaption", text + " " + tag("a", f"Full-size image ({kind})", href=full, class_="full"))
    return tag("figure", tag("div", tag("a", f"<img {attrs}>", href=full), class_="figscroll") + cap)


def write_report(
    results: Sequence[Any],
    *,
    out_dir: str | os.PathLike,
    study: Mapping[str, Any],
    provenance: Mapping[str, Any],
    tables_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the static HTML report of a study.

    Parameters
    ----------
    results : sequence of AnalysisResult
        In display order. Figures under ``out_dir`` are linked in place; others are copied into
        ``out_dir/figures/<analysis>/``. Files (e.g. Newick trees) likewise into ``out_dir/files/<analysis>/``.
    out_dir : path
        Report folder (created); ``index.html`` is written there.
    study : mapping
        The resolved study configuration (``name, datasets, models, metrics, model_metrics, normalize, seed``).
    provenance : mapping
        ``environment`` (package versions), ``datasets`` (metadata and fingerprints), ``models`` (each model's
        provenance dict), ``not_read`` (``"dataset/model"`` -> why the model was not run on it), ``timings_s``,
        ``analysis_failures`` (name -> message), optional ``study_toml`` text,
        optional ``warnings`` (counts by kind, :meth:`matteralign._warnings.WarningLog.summary`; default: those
        of the run in progress).
    tables_dir : path, optional
        Folder where the runner saved the tables (``<tables_dir>/analysis/<analysis>/<table>.csv``); the report
        links those CSVs and writes its own copy under ``out_dir/tables/`` for any it does not find.

    Returns
    -------
    Path
        ``out_dir/index.html``. Everything is relative, so the folder can be moved or opened offline.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tdir = Path(tables_dir) if tables_dir is not None else None
    title = f"matteralign report — {study.get('name', 'study')}"
    failures = dict(provenance.get("analysis_failures") or {})

    toc = [tag("li", tag("a", esc(r.title or r.name), href=f"#{_safe(r.name)}")) for r in results]
    if failures:
        toc.append(tag("li", tag("a", "Failed analyses", href="#failures")))
    toc += [tag("li", tag("a", "How to read this", href="#glossary")),
            tag("li", tag("a", "Provenance", href="#provenance"))]

    parts = [
        '<header class="top">',
        tag("h1", esc(title)),
        tag("p", esc(f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"), class_="small muted"),
        "</header>",
        tag("h2", "What was run", id="run"),
        _study_header(study, results),
        tag("nav", tag("strong", "Contents") + tag("ol", "".join(toc)), class_="toc"),
    ]

    for r in results:
        sec = [tag("h2", esc(r.title or r.name), id=_safe(r.name))]
        if r.summary:
            sec += [tag("p", esc(p)) for p in str(r.summary).split("\n\n") if p.strip()]
        if r.findings:
            sec.append(tag("ul", "".join(tag("li", esc(f)) for f in r.findings), class_="findings"))
        captions = getattr(r, "captions", None) or {}
        for fig in r.figures:
            sec.append(_figure_html(Path(fig), out_dir, r, captions.get(Path(fig).name)))
        if r.files:
            links = [tag("a", esc(Path(f).name), href=_place(Path(f), out_dir, f"files/{_safe(r.name)}"))
                     for f in r.files]
            sec.append(tag("p", "Files: " + " · ".join(links), class_="small"))
        if r.tables:
            inner = "".join(_table_html(df, name=r.name, tname=t, out_dir=out_dir, tables_dir=tdir)
                            for t, df in r.tables.items())
            sec.append(tag("details", tag("summary", f"Tables ({len(r.tables)})") + inner))
        parts.append(tag("section", "".join(sec), class_="analysis"))

    if failures:
        fl = "".join(tag("details", tag("summary", esc(n)) + tag("pre", esc(msg))) for n, msg in failures.items())
        parts.append(tag("section", tag("h2", "Failed analyses", id="failures") + tag("div", fl, class_="error")))

    gl = glossary_rows(list(study.get("metrics") or {}) + list(study.get("model_metrics") or {}))
    cols = ["name", "description", "range", "direction", "meaning", "symmetric", "defaults", "reference"]
    if gl:
        head = "".join(tag("th", esc(c)) for c in cols)
        body = "".join("<tr>" + "".join(tag("td", esc(row[c])) for c in cols) + "</tr>" for row in gl)
        gtable = f'<table class="glossary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    else:
        gtable = tag("p", "No metric is registered in this installation.", class_="muted")
    parts.append(tag("section", tag("h2", "How to read this", id="glossary")
                     + tag("p", "Generated from the metric registry (matteralign.metrics.METRICS). Every number in "
                                "the tables is computed on the samples all compared models embedded, after the "
                                "normalisation stated above.", class_="small muted")
                     + gtable))

    prov = [tag("h2", "Provenance", id="provenance")]
    env = provenance.get("environment") or provenance.get("versions")
    if env:
        prov += [tag("h3", "Environment and package versions"),
                 kv_table(dict(env)) if isinstance(env, Mapping) else json_block(env)]
    if provenance.get("datasets"):
        prov.append(tag("h3", "Datasets"))
        for name, meta in dict(provenance["datasets"]).items():
            prov.append(tag("details", tag("summary", esc(name)) + json_block(meta)))
    if provenance.get("models"):
        prov.append(tag("h3", "Models"))
        for name, meta in dict(provenance["models"]).items():
            prov.append(tag("details", tag("summary", esc(name)) + json_block(meta)))
    if provenance.get("not_read"):  # "dataset/model" -> why the model was not run there
        prov += [tag("h3", "Models not run on a dataset", id="not-read"), kv_table(dict(provenance["not_read"]))]
    if provenance.get("timings_s"):
        prov += [tag("h3", "Timings (s)"), kv_table(dict(provenance["timings_s"]))]
    warned = provenance.get("warnings")
    if warned is None:
        from .._warnings import current

        log = current()  # the run in progress: the driver's and the workers' warnings so far
        warned = log.summary() if log is not None else []
    prov.append(tag("h3", "Warnings during the run", id="warnings"))
    if warned:
        head = "".join(tag("th", c) for c in ("count", "kind", "first example", "where"))
        body = "".join("<tr>" + tag("td", esc(w["count"]), class_="num") + tag("td", esc(w["kind"]))
                       + tag("td", esc(w["example"])) + tag("td", esc(w["source"])) + "</tr>" for w in warned)
        prov.append(f'<table class="warnings"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    else:
        prov.append(tag("p", "None.", class_="small muted"))
    rest = {k: v for k, v in provenance.items()
            if k not in {"environment", "versions", "datasets", "models", "timings_s", "analysis_failures",
                         "study_toml", "warnings", "not_read"}}
    if rest:
        prov += [tag("h3", "Other"), json_block(rest)]
    prov += [tag("h3", "Study file"), _study_toml(study, provenance, out_dir)]
    parts.append(tag("section", "".join(prov)))

    index = out_dir / "index.html"
    tmp = index.with_name(f"index.html.tmp{os.getpid()}")
    tmp.write_text(page(title, "\n".join(parts)), encoding="utf-8")
    os.replace(tmp, index)
    (out_dir / "report.json").write_text(json.dumps(
        {"title": title, "sections": [r.name for r in results], "failures": sorted(failures)}, indent=2))
    return index
