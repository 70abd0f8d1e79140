"""Command-line interface (Typer + Rich): a thin layer over the library.

Commands: ``run`` (the study), ``extract`` (embeddings into the store), ``compare``
(alignment matrices of saved arrays), ``layers`` (layer x layer maps of two models), ``list`` (metrics,
models, datasets).
Every :class:`~matteralign.errors.MatterAlignError` is printed as one line with a hint;
``--traceback`` shows the stack.
"""

from __future__ import annotations

import errno
import sys

import typer

from .errors import MatterAlignError

app = typer.Typer(
    name="matteralign",
    help="Measure how far scientific foundation models agree in their representations of matter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
list_app = typer.Typer(help="List registered metrics, models and datasets.", no_args_is_help=True)
app.add_typer(list_app, name="list")
env_app = typer.Typer(help="Per-family model environments (built once per machine, reused).", no_args_is_help=True)
app.add_typer(env_app, name="env")
store_app = typer.Typer(help="Check and repair an embedding store.", no_args_is_help=True)
app.add_typer(store_app, name="store")

_state = {"traceback": False}


@app.callback()
def _root(
    traceback: bool = typer.Option(False, "--traceback", help="Show the full stack on errors."),
):
    _state["traceback"] = traceback


def _console():
    from rich.console import Console

    return Console()


_FORMAT_HELP = "table, plain (tab-separated) or json; default: table on a terminal, plain when piped."


@list_app.command("metrics")
def list_metrics(fmt: str = typer.Option(None, "--format", help=_FORMAT_HELP)):
    """List every registered metric with its properties."""
    from ._listing import emit
    from .metrics import METRICS

    rows = []
    for spec in sorted(METRICS.values(), key=lambda s: s.name):
        rows.append({
            "name": spec.name,
            "arity": spec.arity,
            "symmetric": spec.symmetric,
            "bounds": f"[{spec.bounds[0]:g}, {spec.bounds[1]:g}]",
            "better": {True: "higher", False: "lower", None: "-"}[spec.higher_is_better],
            "invariances": sorted(spec.invariances),
            "defaults": ", ".join(f"{k}={v}" for k, v in spec.params.items()),
            "description": spec.description,
        })
    emit(rows, list(rows[0]), fmt=fmt, title="matteralign metrics")


def _runs_here(row) -> str:
    if row["available"]:
        return "yes"
    needs = [f"env {row['env']}"] if row.get("env") else []
    if row.get("requires_checkpoint"):
        needs.append("checkpoint")
    return "needs " + " + ".join(needs) if needs else "no (see info)"


@list_app.command("models")
def list_models(fmt: str = typer.Option(None, "--format", help=_FORMAT_HELP)):
    """List every model: family, modality, default layer and whether it runs here (details: `info MODEL`)."""
    from ._listing import emit
    from .execute.placement import model_info

    records = model_info()
    rows = [{"name": r["name"], "family": r["family"], "modality": r["modality"], "default layer": r["default_layer"],
             "layers": len(r["layers"]), "runs here": _runs_here(r)} for r in records]
    emit(rows, list(rows[0]), fmt=fmt, title="matteralign models (details: matteralign info MODEL)", records=records)


@list_app.command("datasets")
def list_datasets(fmt: str = typer.Option(None, "--format", help=_FORMAT_HELP)):
    """List the bundled datasets and the file readers."""
    from ._listing import emit
    from .datasets import describe

    rows = [{"name": i.name, "kind": i.kind, "size": i.size, "labels": list(i.labels), "source": i.source}
            for i in describe()]
    emit(rows, list(rows[0]), fmt=fmt, title="matteralign datasets")


@app.command()
def info(
    model: str = typer.Argument(..., help="Model name (see `matteralign list models`)."),
    fmt: str = typer.Option(None, "--format", help="text (default) or json."),
):
    """Everything about one model: what it is, its layers, where it runs and what it needs."""
    import json

    from .errors import InputError
    from .execute.placement import unavailable_reason
    from .models import get_spec

    spec = get_spec(model)
    reason = unavailable_reason(spec.name)
    layers = [{"layer": li.name, "depth": li.depth, "width": li.width, "alias_of": li.alias_of,
               "embedding_type": spec.embedding_type_of(li.name), "default": li.name == spec.default_layer}
              for li in spec.layer_info()]
    rec = {
        "name": spec.name, "family": spec.family, "kind": spec.kind, "modality": spec.modality,
        "reads": list(spec.reads()), "control": spec.control, "embedding_type": spec.embedding_type,
        "default_layer": spec.default_layer, "layers": layers, "properties": list(spec.properties),
        "env": spec.env or "main", "requires_checkpoint": spec.requires_checkpoint, "gpu": spec.gpu,
        "runs_here": reason is None, "reason": reason, "description": spec.description,
    }
    if fmt == "json":
        typer.echo(json.dumps(rec, indent=1, default=str))
        return
    if fmt not in (None, "text"):
        raise InputError(f"--format must be 'text' or 'json'; got {fmt!r}.")
    width = max(len(k) for k in rec)
    for key, value in rec.items():
        if key == "layers":
            typer.echo(f"{'layers':<{width}}  {len(layers)} in forward order (depth, width, embedding type):")
            for li in layers:
                mark = "  <- default" if li["default"] else ""
                alias = f", repeats {li['alias_of']}" if li["alias_of"] else ""
                typer.echo(f"{'':<{width}}    {li['layer']} ({li['depth']}, {li['width'] or '?'}, "
                           f"{li['embedding_type']}{alias}){mark}")
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        typer.echo(f"{key:<{width}}  {'-' if value in (None, '') else value}")


@app.command()
def run(
    study: str = typer.Argument(None, help="Study TOML file (default: the bundled default study)."),
    dataset: list[str] = typer.Option(None, "--dataset", help="Run only this dataset (repeatable)."),
    model: list[str] = typer.Option(None, "--model", help="Run only this model (repeatable)."),
    n: int = typer.Option(None, "--n", help="Samples per dataset (overrides the study)."),
    seed: int = typer.Option(None, "--seed", help="Seed for subsampling and random controls."),
    out: str = typer.Option(None, "--out", help="Output folder (store, results, report)."),
    store: str = typer.Option(None, "--store", help="Embedding store shared with other studies (default: OUT/store)."),
    executor: str = typer.Option(None, "--executor", help="Where units run: local (default), ray or inline."),
    address: str = typer.Option(None, "--address", help="Ray cluster: auto or HOST:PORT (default: a local Ray)."),
    workers: int = typer.Option(None, "--workers", help="Units at a time (default: every core)."),
    print_default: bool = typer.Option(False, "--print-default", help="Print the default study and exit."),
    check: bool = typer.Option(False, "--check", help="Check the study's names and parameters, list every "
                               "checkpoint path that does not exist and every model that cannot run here, and "
                               "run nothing (exit status 2 when any is listed)."),
):
    """Run a study: extract -> measure -> analyse -> report. Ends with the report's path."""
    from .study import Study, default_study_text

    if print_default:
        typer.echo(default_study_text(), nl=False)
        return
    execution = {"executor": executor, "address": address, "workers": workers}
    s = Study.from_toml(study).override(datasets=dataset, models=model, n=n, seed=seed, out=out, execution=execution,
                                          store=store)
    if check:
        s.validate(files=False)
        found = s.problems()
        for p in found:
            typer.echo(f"{p['model']}: {p['reason']}")
        n_ckpt = sum(p["what"] == "checkpoint" for p in found)
        if found:
            _err_console().print(f"{s.source}: {n_ckpt} checkpoint path(s) missing, "
                                 f"{len(found) - n_ckpt} model(s) cannot run here", highlight=False)
            raise SystemExit(EXIT_USER_ERROR)
        typer.echo(f"{s.source}: every model can run and every checkpoint exists")
        return
    results = s.run(progress=True)
    typer.echo(str(results.report.resolve()) if results.report else str(s.out.resolve()))
    if not results.complete and not s.config.allow_partial:  # the summary was printed by the run
        _err_console().print("[red]the study is incomplete[/] (exit status 3); set allow_partial = true in the "
                             "study to accept partial results", highlight=False)
        raise SystemExit(EXIT_INCOMPLETE)


@app.command()
def compare(
    arrays: list[str] = typer.Argument(None, help="Two or more .npy files or .npz archives (FILE.npz:KEY for one "
                                       "array), rows = the same samples in the same order."),
    metric: list[str] = typer.Option(["cknna"], "--metric", "-m", help="Metric name (repeatable)."),
    param: list[str] = typer.Option(None, "--param", "-p", help="METRIC.PARAM=VALUE, e.g. cknna.k=25 (repeatable)."),
    k: int = typer.Option(None, "--k", help="k of every selected metric that has one and no --param M.k."),
    normalize: str = typer.Option("l2", "--normalize", help="Row normalisation: l2 (the default everywhere), max, "
                                  "clamp95 or none (the arrays as given)."),
    store: str = typer.Option(None, "--store", help="Read the inputs from this embedding store (with --dataset, "
                              "--model)."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset name in the store."),
    model: list[str] = typer.Option(None, "--model", help="Model in the store (repeatable; two or more)."),
    layer: str = typer.Option(None, "--layer", help="Layer in the store (default: each model's default layer)."),
    out: str = typer.Option(None, "--out", help="Write the tidy table: .csv, .parquet or .json."),
):
    """Alignment of saved arrays or stored embeddings: an M x M table per pair metric, one value per input for
    single-representation measures (e.g. intrinsic_dimension); optionally the tidy table to a file."""
    from rich.table import Table

    from . import _compare
    from .errors import InputError
    from .metrics import get_metric, pairwise, to_matrix

    if out:
        _compare.check_output(out)  # before any work
    if store:
        if arrays:
            raise InputError(f"give array files or --store, not both; got {len(arrays)} file(s) and --store {store!r}.")
        reps, _ = _compare.read_store(store, dataset, model or [], layer=layer)
    else:
        if dataset or model:
            raise InputError("--dataset and --model read from a store: add --store PATH.")
        reps = _compare.read_arrays(arrays or [])
        if len(reps) < 2:
            raise InputError(f"compare needs at least two arrays; got {len(reps)}.")
    metrics = _compare.metric_list(metric, _compare.parse_params(param or []), k)
    table = pairwise(reps, metrics, normalize=None if normalize == "none" else normalize, progress=True)
    console = _console()
    names = list(reps)
    for (name, params), part in table.groupby(["metric", "params"], sort=False):
        one = get_metric(name).arity == 1
        where = "one value per input" if one else "rows: model_a, columns: model_b"
        console.print(f"\n[bold]{name}[/] {params}  ({where}; normalize={normalize}; n={part['n'].iloc[0]})",
                      highlight=False)
        if one:
            t = Table()
            t.add_column("input")
            t.add_column("value", justify="right")
            for row in part.itertuples():
                t.add_row(row.model_a, f"{row.value:.4f}")
            console.print(t)
            continue
        mat = to_matrix(part, names=names)
        t = Table()
        t.add_column("")
        for b in names:
            t.add_column(b, justify="right")
        for a in names:
            t.add_row(a, *(f"{mat.loc[a, b]:.4f}" for b in names))
        console.print(t)
    if out:
        kind = _compare.write_table(table, out)
        console.print(f"wrote {len(table)} rows ({kind}) to {out}", highlight=False)


@app.command()
def extract(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Bundled dataset name or dataset file."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (see `matteralign list models`)."),
    layer: list[str] = typer.Option(None, "--layer", help="Layer (repeatable; default: the model's default layer)."),
    layers: str = typer.Option(None, "--layers", help="'all' (every layer, one forward pass) or A,B,..."),
    n: int = typer.Option(None, "--n", help="Random subset of this many samples (all when omitted)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset and of the model."),
    store: str = typer.Option("runs/store", "--store", help="Embedding store folder."),
    shard_size: int = typer.Option(256, "--shard-size", help="Samples per atomically committed shard."),
    batch_size: int = typer.Option(None, "--batch-size", help="Structures per forward pass."),
    pooling: list[str] = typer.Option(["mean"], "--pooling", help="Pooled arrays to store: mean, sum, max."),
    threads: int = typer.Option(None, "--threads", help="Threads per worker (default 1)."),
    workers: int = typer.Option(None, "--workers", help="Worker processes (default: every core)."),
    executor: str = typer.Option(None, "--executor", help="Where shards run: local (default), ray or inline."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace stored embeddings of this layer."),
    checkpoint: list[str] = typer.Option(None, "--checkpoint", help="Local checkpoint: PATH or NAME=PATH."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint",
                                          help="Allow pickled checkpoints (loading them can run code)."),
):
    """Embed a dataset with one model into the store (resumes an interrupted run).

    The shards run in worker processes (the model's own environment when it has one:
    ``matteralign env list``); the driver commits each shard to the store as it lands.
    """
    from . import datasets, models
    from .execute import extract as run_extraction

    spec = models.get_spec(model)  # an unknown name fails before any loading
    asked = list(layer or []) + [v.strip() for v in (layers or "").split(",") if v.strip()]
    lays = models.expand_layers(spec, asked) if asked else None  # unknown layers fail before any loading
    ds = datasets.load(dataset, n=n, seed=seed)
    options = {"seed": seed}
    ckpt = _checkpoint_for(model, checkpoint or [])
    if ckpt is not None:
        options["checkpoint"] = ckpt
    if trust_checkpoint:
        options["trust_checkpoint"] = True
    summary = run_extraction(store, ds, model, layers=lays, options=options, shard_size=shard_size,
                             batch_size=batch_size, poolings=pooling, overwrite=overwrite, progress=True,
                             executor=executor, workers=workers, threads=threads)
    for part in (summary.get("layers") or {summary["layer"]: summary}).values():
        _console().print(
            f"{part['dataset']} · {part['model']} · {part['layer']}: {part['n']} samples embedded "
            f"(d = {part['dim']}), {part['n_skipped']} skipped, {part['computed_shards']} shard(s) computed "
            f"in {part['seconds']:.1f} s → {part['path']}",
            highlight=False,
        )


@app.command("layers")
def layers_cmd(
    model_a: str = typer.Argument(..., help="First model (rows of the map)."),
    model_b: str = typer.Argument(None, help="Second model (columns; default: the first, a self map)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Bundled dataset name or dataset file."),
    metric: list[str] = typer.Option(["cknna"], "--metric", "-m", help="Pair metric (repeatable)."),
    layers_a: str = typer.Option("all", "--layers-a", help="Layers of the first model: 'all' or A,B,..."),
    layers_b: str = typer.Option("all", "--layers-b", help="Layers of the second model: 'all' or A,B,..."),
    n: int = typer.Option(None, "--n", help="Random subset of this many samples (all when omitted)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset, the models and the tests."),
    k: int = typer.Option(None, "--k", help="Neighbours for kNN metrics (default: each metric's own)."),
    normalize: str = typer.Option("l2", "--normalize", help="Row normalisation: l2, max, clamp95 or none."),
    permutations: int = typer.Option(0, "--permutations", help="Permutations per cell (p-value, calibrated)."),
    subsamples: int = typer.Option(0, "--subsamples", help="Subsamples testing best vs runner-up layer."),
    aggregate: str = typer.Option(None, "--aggregate", help="Also print one score per pair: platonic_max."),
    store: str = typer.Option("runs/store", "--store", help="Embedding store (missing layers are extracted)."),
    workers: int = typer.Option(None, "--workers", help="Extraction worker processes (default: every core)."),
    out: str = typer.Option(None, "--out", help="Tidy table (CSV; default runs/layers/<dataset>-<A>-<B>.csv)."),
):
    """Layer x layer alignment of two models (or one with itself): prints the map, writes the table.

    Layers missing from the store are extracted first, all layers of a model in one forward pass.
    """
    from pathlib import Path

    from rich.table import Table

    from . import datasets, models
    from .analysis.layers import AGGREGATES, best_matches, layer_map, max_over_layer_pairs
    from .errors import InputError
    from .execute import extract as run_extraction
    from .store import Store

    if aggregate is not None and aggregate not in AGGREGATES:
        raise InputError(f"--aggregate must be one of {', '.join(AGGREGATES)}; got {aggregate!r}")
    model_b = model_b or model_a
    asked = {}
    for name, value in ((model_a, layers_a), (model_b, layers_b)):
        items = [v.strip() for v in value.split(",") if v.strip()]
        asked[name] = models.expand_layers(models.get_spec(name), items)  # fails before any loading
    ds = datasets.load(dataset, n=n, seed=seed)
    st = Store(store)
    reps = {}
    wanted = set(ds.ids)

    def covered(name, lay):  # a stored layer of a smaller --n is extended with the missing samples only
        if not st.has(ds.name, name, lay):
            return False
        ids, _ = st.read(ds.name, name, lay)
        return wanted <= set(ids) | set(st.skipped(ds.name, name, lay))

    for name in dict.fromkeys((model_a, model_b)):
        lays = asked[name] if model_a != model_b else list(dict.fromkeys(asked[model_a] + asked[model_b]))
        todo = [lay for lay in lays if not covered(name, lay)]
        if todo:
            run_extraction(st, ds, name, layers=todo, options={"seed": seed}, progress=True, workers=workers)
        reps[name] = {lay: st.read(ds.name, name, lay) for lay in lays}
    common = set.intersection(*(set(ids) for r in reps.values() for ids, _ in r.values())) & wanted
    ids = sorted(common)
    if len(ids) < 4:
        raise InputError(f"{model_a} and {model_b} embed only {len(ids)} common sample(s) of {ds.name!r}")

    def aligned(name, lays):
        out = {}
        for lay in lays:
            lids, X = reps[name][lay]
            pos = {s: i for i, s in enumerate(lids)}
            out[lay] = X[[pos[s] for s in ids]]
        return out

    depth = {name: {li.name: li.depth for li in models.get_spec(name).layer_info()} for name in reps}
    ra = aligned(model_a, asked[model_a])
    rb = aligned(model_b, asked[model_b]) if (model_b != model_a or asked[model_b] != asked[model_a]) else None
    table = layer_map(ra, rb, metrics=metric, model_a=model_a, model_b=model_b, depths_a=depth[model_a],
                      depths_b=depth[model_b], k=k, normalize=None if normalize == "none" else normalize,
                      n_permutations=permutations, seed=seed, skip_invalid=True)
    console = _console()
    for key, reason in table.attrs["skipped"].items():
        console.print(f"[yellow]left out[/] {key}: {reason}", highlight=False)
    for (name, params), part in table.groupby(["metric", "params"], sort=False):
        lb = list(dict.fromkeys(part["layer_b"]))
        t = Table(title=f"{name} {params} on {ds.name} (n = {len(ids)}): rows {model_a}, columns {model_b}")
        t.add_column("depth: layer")
        for x in lb:
            t.add_column(f"{depth[model_b].get(x, '?')}: {x}", justify="right")
        bm = best_matches(part, reps_a=ra, reps_b=rb, n_subsamples=subsamples, seed=seed,
                          normalize=None if normalize == "none" else normalize)
        best = dict(zip(bm["layer_a"], bm["best_layer"], strict=True))
        for a, rows in part.groupby("layer_a", sort=False):
            vals = dict(zip(rows["layer_b"], rows["value"], strict=True))
            t.add_row(f"{rows['depth_a'].iloc[0]}: {a}",
                      *(f"[bold]{vals[x]:.4f}[/]" if best[a] == x else f"{vals[x]:.4f}" for x in lb))
        console.print(t)
        for r in bm.itertuples():
            sig = "" if r.significant is None else (" (significant)" if r.significant else " (not significant)")
            console.print(f"  {r.layer_a} → best {r.best_layer} {r.value:.4f}, runner-up {r.runner_up} "
                          f"{r.runner_up_value:.4f}{sig}", highlight=False)
    if aggregate == "platonic_max":
        for r in max_over_layer_pairs(table).itertuples():
            console.print(f"platonic_max {r.metric}: {r.value:.4f} at {r.layer_a} x {r.layer_b}", highlight=False)
    path = Path(out) if out else Path("runs/layers") / f"{ds.name}-{model_a}-{model_b}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.insert(0, "dataset", ds.name)
    table.to_csv(path, index=False)
    console.print(f"wrote {len(table)} rows to {path}", highlight=False)


def _checkpoint_for(model: str, values: list[str]) -> str | None:
    """The checkpoint path for ``model`` from ``--checkpoint PATH`` / ``--checkpoint NAME=PATH`` values."""
    from .errors import InputError

    plain, named = [], {}
    for v in values:
        name, sep, path = v.partition("=")
        if sep and name and "/" not in name and "\\" not in name:
            named[name] = path
        else:
            plain.append(v)
    if len(plain) > 1:
        raise InputError(f"--checkpoint given {len(plain)} plain paths {plain}; give one, or NAME=PATH per model")
    return named.get(model, plain[0] if plain else None)


@env_app.command("create")
def env_create(
    family: list[str] = typer.Argument(None, help="Families to build (default: every buildable one)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if it exists."),
):
    """Build the model environment of FAMILY (once per machine; atomic)."""
    from . import envs

    fams = family or [f for f, s in envs.FAMILIES.items() if not s.unavailable]
    console = _console()
    for fam in fams:
        path = envs.create(fam, force=force, log=lambda line: console.print(line, highlight=False))
        console.print(f"{fam}: {path}", highlight=False)


@env_app.command("list")
def env_list(fmt: str = typer.Option(None, "--format", help=_FORMAT_HELP)):
    """Show which model environments exist, where, their size and what they hold."""
    from . import envs
    from ._listing import emit

    records = envs.list_envs()
    rows = []
    for row in records:
        built = "yes" if row["exists"] else (f"no: {row['reason']}" if row["reason"] else "no")
        if row["exists"] and not row["current"]:
            built = "yes (stale requirements)"
        rows.append({
            "family": row["family"], "built": built, "path": row["path"],
            "size": f"{row['size_bytes'] / 2**30:.2f} GiB" if row["size_bytes"] is not None else "-",
            "holds": row["versions"], "freeze sha256": (row["freeze_sha256"] or "-")[:12],
            "build s": row["build_seconds"] or "-",
        })
    emit(rows, list(rows[0]), fmt=fmt, title=f"matteralign model environments ({envs.env_root()})", records=records)


@store_app.command("verify")
def store_verify(
    path: str = typer.Argument(..., help="Store folder (e.g. runs/study/store)."),
):
    """Check every stored array against the digests recorded when it was committed (exit status 4 on damage)."""
    from .store import Store

    st = Store(path, mode="r")
    console = _console()
    problems = st.verify()
    n_layers = len(st.list())
    for p in problems:
        console.print(f"[red]damaged:[/] {_escape(p['message'])}", highlight=False, soft_wrap=True)
    if problems:
        console.print(f"{len(problems)} damage(s) in {n_layers} stored layer(s); run `matteralign store repair "
                      f"{_escape(path)}`, then the study again, to recompute them", highlight=False)
        raise SystemExit(EXIT_DAMAGED)
    console.print(f"{n_layers} stored layer(s) in {_escape(path)}: every array matches its digests", highlight=False)


@store_app.command("repair")
def store_repair(
    path: str = typer.Argument(..., help="Store folder (e.g. runs/study/store)."),
):
    """Delete the damaged shards of stored layers so the next run recomputes only those."""
    from .store import Store

    st = Store(path)
    console = _console()
    removed = st.repair()
    seen = set()
    for p in removed:
        layer = f"{p['dataset']}/{p['model']}/{p['layer']}"
        if (layer, p["removed"]) in seen:
            continue
        seen.add((layer, p["removed"]))
        what = "the whole layer" if p["recompute"] is None else \
            f"shard(s) {', '.join(map(str, p['recompute']))}" if p["recompute"] else "nothing"
        console.print(f"removed {what} of {_escape(layer)} ({_escape(p['removed'])})", highlight=False,
                      soft_wrap=True)
    what = f"{len(removed)} damage(s) removed; run the study (or extraction) again to recompute them" \
        if removed else "nothing is damaged"
    console.print(f"{_escape(path)}: {what}", highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))


#: Exit status of a user error (bad input, unreadable or unwritable path, busy folder) and of a bug.
EXIT_USER_ERROR, EXIT_BUG = 2, 1
#: Exit status of a study that ran to the end but could not compute some requested numbers.
EXIT_INCOMPLETE = 3
#: Exit status of ``store verify`` when a stored array does not match its digests.
EXIT_DAMAGED = 4

_OS_HINTS = {
    errno.EACCES: "choose a path you may write to (or fix its permissions)",
    errno.EPERM: "choose a path you may write to (or fix its permissions)",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.ENOSPC: "the disk is full; free some space or choose a folder on another disk",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another folder",
    errno.ENOENT: "check the path; a folder cannot be created there (e.g. under /proc)",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EEXIST: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "the path is a folder; give a file",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter one",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
}


def _explain(exc: BaseException) -> tuple[int, str, str]:
    """(exit status, one line, hint) for an exception that reached the command line."""
    tb_hint = "run with --traceback for the full stack"
    if isinstance(exc, MatterAlignError):
        return EXIT_USER_ERROR, str(exc), tb_hint
    if isinstance(exc, OSError):
        paths = " -> ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
        what = exc.strerror or type(exc).__name__
        line = f"{what}: {paths}" if paths else f"{what} ({exc})"
        return EXIT_USER_ERROR, line, _OS_HINTS.get(exc.errno, tb_hint)
    if isinstance(exc, UnicodeError):
        return EXIT_USER_ERROR, f"an input is not UTF-8 text ({exc}); a binary file given as a text file?", tb_hint
    if isinstance(exc, (OverflowError, FloatingPointError)):
        return (EXIT_USER_ERROR, f"numeric overflow ({type(exc).__name__}: {exc}): the input holds values too large "
                "to compute with", "rescale the input (e.g. divide by its largest magnitude) or normalise it (l2)")
    if isinstance(exc, MemoryError):
        return EXIT_USER_ERROR, "out of memory", "use fewer samples (--n) or a machine with more memory"
    if isinstance(exc, RecursionError):
        return EXIT_BUG, f"internal error: {exc}", "this is a bug: rerun with --traceback and report the stack"
    return (EXIT_BUG, f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in matteralign: rerun with --traceback and report the stack")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``matteralign`` console script.

    A user error (a :class:`~matteralign.errors.MatterAlignError`, an unreadable or unwritable path, a
    binary file given as text, a numeric overflow, a bad option value) prints one line and a hint on
    stderr and exits with status 2; anything else is a bug and exits with status 1. ``--traceback``
    shows the stack instead.
    """
    args = sys.argv[1:] if argv is None else argv
    show_tb = "--traceback" in args
    try:
        app(args=args, prog_name="matteralign", standalone_mode=False)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if show_tb:
            raise
        _err_console().print("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:
        if _is_click(exc, "ClickException"):  # usage errors: bad option value, missing argument, ...
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if _is_click(exc, "Abort"):
            raise SystemExit(1) from None
        if show_tb:
            raise
        from rich.markup import escape

        code, line, hint = _explain(exc)
        console = _err_console()
        console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        console.print(f"[dim]hint: {escape(hint)}.[/]", highlight=False, soft_wrap=True)
        raise SystemExit(code) from None


def _is_click(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is click's exception class ``name`` (typer may carry its own copy of click)."""
    import click

    classes = [getattr(click.exceptions, name, None)]
    try:
        from typer._click import exceptions as vendored

        classes.append(getattr(vendored, name, None))
    except ImportError:
        pass
    return any(c is not None and isinstance(exc, c) for c in classes)


def _err_console():
    from rich.console import Console

    return Console(stderr=True)


if __name__ == "__main__":  # pragma: no cover
    main()
