"""Command-line interface (Typer + Rich): a thin layer over the library.

Commands: ``run`` (the study), ``extract`` (embeddings into the store), ``compare``
(alignment matrices of saved arrays), ``layers`` (layer x layer maps of two models), ``list`` (metrics,
models, datasets).
Every :class:`~matteralign.errors.MatterAlignError` is printed as one line with a hint;
``--traceback`` shows the stack.
"""

from __future__ import annotations

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

_state = {"traceback": False}


@app.callback()
def _root(
    traceback: bool = typer.Option(False, "--traceback", help="Show the full stack on errors."),
):
    _state["traceback"] = traceback


def _console():
    from rich.console import Console

    return Console()


@list_app.command("metrics")
def list_metrics():
    """List every registered metric with its properties."""
    from rich.table import Table

    from .metrics import METRICS

    table = Table(title="matteralign metrics")
    for col in ("name", "arity", "symmetric", "bounds", "better", "invariances", "defaults", "description"):
        table.add_column(col)
    for spec in sorted(METRICS.values(), key=lambda s: s.name):
        better = {True: "higher", False: "lower", None: "-"}[spec.higher_is_better]
        table.add_row(
            spec.name,
            str(spec.arity),
            "yes" if spec.symmetric else "no",
            f"[{spec.bounds[0]:g}, {spec.bounds[1]:g}]",
            better,
            ", ".join(sorted(spec.invariances)),
            ", ".join(f"{k}={v}" for k, v in spec.params.items()),
            spec.description,
        )
    _console().print(table)


@list_app.command("models")
def list_models():
    """List every model adapter: family, modality, layers and whether it can run here."""
    from rich.table import Table

    from .models import info

    table = Table(title="matteralign models")
    for col in ("name", "family", "modality", "default layer", "other layers", "runs here", "description"):
        table.add_column(col)
    for row in info():
        here = "yes" if row["available"] else f"no: {row['reason']}"
        others = ", ".join(lay for lay in row["layers"] if lay != row["default_layer"])
        table.add_row(row["name"], row["family"], row["modality"], row["default_layer"], others, here,
                      row["description"])
    _console().print(table)


@list_app.command("datasets")
def list_datasets():
    """List the bundled datasets and the file readers."""
    from rich.table import Table

    from .datasets import describe

    table = Table(title="matteralign datasets")
    for col in ("name", "kind", "size", "labels", "source"):
        table.add_column(col)
    for info in describe():
        table.add_row(info.name, info.kind, info.size, ", ".join(info.labels), info.source)
    _console().print(table)


@app.command()
def run(
    study: str = typer.Argument(None, help="Study TOML file (default: the bundled default study)."),
    dataset: list[str] = typer.Option(None, "--dataset", help="Run only this dataset (repeatable)."),
    model: list[str] = typer.Option(None, "--model", help="Run only this model (repeatable)."),
    n: int = typer.Option(None, "--n", help="Samples per dataset (overrides the study)."),
    seed: int = typer.Option(None, "--seed", help="Seed for subsampling and random controls."),
    out: str = typer.Option(None, "--out", help="Output folder (store, results, report)."),
    executor: str = typer.Option(None, "--executor", help="Where units run: local (default), ray or inline."),
    address: str = typer.Option(None, "--address", help="Ray cluster: auto or HOST:PORT (default: a local Ray)."),
    workers: int = typer.Option(None, "--workers", help="Units at a time (default: every core)."),
    print_default: bool = typer.Option(False, "--print-default", help="Print the default study and exit."),
):
    """Run a study: extract -> measure -> analyse -> report. Ends with the report's path."""
    from .study import Study, default_study_text

    if print_default:
        typer.echo(default_study_text(), nl=False)
        return
    execution = {"executor": executor, "address": address, "workers": workers}
    s = Study.from_toml(study).override(datasets=dataset, models=model, n=n, seed=seed, out=out, execution=execution)
    results = s.run(progress=True)
    typer.echo(str(results.report.resolve()) if results.report else str(s.out.resolve()))


@app.command()
def compare(
    arrays: list[str] = typer.Argument(..., help="Two or more .npy files (n_samples, n_features), same sample order."),
    metric: list[str] = typer.Option(["cknna"], "--metric", "-m", help="Metric name (repeatable)."),
    k: int = typer.Option(None, "--k", help="Neighbours for kNN metrics (default: each metric's own)."),
    normalize: str = typer.Option("l2", "--normalize", help="Row normalisation: l2, max, clamp95 or none."),
    out: str = typer.Option(None, "--out", help="Write the tidy table (CSV) here."),
):
    """Alignment matrix of saved arrays: prints an M x M table per metric, optionally writes a tidy CSV."""
    from pathlib import Path

    import numpy as np
    from rich.table import Table

    from .errors import InputError
    from .metrics import pairwise, to_matrix

    if len(arrays) < 2:
        raise InputError(f"compare needs at least two .npy files; got {len(arrays)}.")
    reps = {}
    for path in arrays:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"array file {path!r} does not exist.")
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"could not read {path!r} as a .npy array: {exc}") from exc
        name = p.stem if p.stem not in reps else str(p)
        reps[name] = arr
    table = pairwise(reps, metric, k=k, normalize=None if normalize == "none" else normalize, progress=True)
    console = _console()
    names = list(reps)
    for (name, params), part in table.groupby(["metric", "params"], sort=False):
        mat = to_matrix(part, names=names)
        t = Table(title=f"{name} {params}  (rows: model_a, columns: model_b; n={part['n'].iloc[0]})")
        t.add_column("")
        for b in names:
            t.add_column(b, justify="right")
        for a in names:
            t.add_row(a, *(f"{mat.loc[a, b]:.4f}" for b in names))
        console.print(t)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
        console.print(f"wrote {len(table)} rows to {out}")


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
    threads: int = typer.Option(None, "--threads", help="Threads per worker (default: cores / workers)."),
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
    for name in dict.fromkeys((model_a, model_b)):
        lays = asked[name] if model_a != model_b else list(dict.fromkeys(asked[model_a] + asked[model_b]))
        todo = [lay for lay in lays if not st.has(ds.name, name, lay)]
        if todo:
            run_extraction(st, ds, name, layers=todo, options={"seed": seed}, progress=True, workers=workers)
        reps[name] = {lay: st.read(ds.name, name, lay) for lay in lays}
    wanted = set(ds.ids)
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
                      n_permutations=permutations, seed=seed)
    console = _console()
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
def env_list():
    """Show which model environments exist, where, their size and what they hold."""
    from rich.table import Table

    from . import envs

    table = Table(title=f"matteralign model environments ({envs.env_root()})")
    for col in ("family", "built", "path", "size", "holds", "freeze sha256", "build s"):
        table.add_column(col)
    for row in envs.list_envs():
        size = f"{row['size_bytes'] / 2**30:.2f} GiB" if row["size_bytes"] is not None else "-"
        built = "yes" if row["exists"] else (f"no: {row['reason']}" if row["reason"] else "no")
        if row["exists"] and not row["current"]:
            built = "yes (stale requirements)"
        holds = ", ".join(f"{k} {v}" for k, v in row["versions"].items())
        table.add_row(row["family"], built, row["path"], size, holds, (row["freeze_sha256"] or "-")[:12],
                      str(row["build_seconds"] or "-"))
    _console().print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``matteralign`` console script."""
    args = sys.argv[1:] if argv is None else argv
    show_tb = "--traceback" in args
    try:
        app(args=args, standalone_mode=False)
    except MatterAlignError as exc:
        if show_tb:
            raise
        _console().print(f"[bold red]error:[/] {exc}", highlight=False)
        _console().print("[dim]hint: run with --traceback for the full stack.[/]")
        raise SystemExit(2) from None
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if isinstance(exc, click.exceptions.Abort):
            raise SystemExit(1) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
