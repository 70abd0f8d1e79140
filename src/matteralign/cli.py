"""Command-line interface (Typer + Rich): a thin layer over the library.

Commands: ``run`` (the study), ``extract`` (embeddings into the store), ``compare``
(alignment matrices of saved arrays), ``list`` (metrics, models, datasets).
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
    layer: str = typer.Option(None, "--layer", help="Layer (default: the model's default layer)."),
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

    models.get_spec(model)  # an unknown name fails before any loading
    ds = datasets.load(dataset, n=n, seed=seed)
    options = {"seed": seed}
    ckpt = _checkpoint_for(model, checkpoint or [])
    if ckpt is not None:
        options["checkpoint"] = ckpt
    if trust_checkpoint:
        options["trust_checkpoint"] = True
    summary = run_extraction(store, ds, model, layer=layer, options=options, shard_size=shard_size,
                             batch_size=batch_size, poolings=pooling, overwrite=overwrite, progress=True,
                             executor=executor, workers=workers, threads=threads)
    _console().print(
        f"{summary['dataset']} · {summary['model']} · {summary['layer']}: {summary['n']} samples embedded "
        f"(d = {summary['dim']}), {summary['n_skipped']} skipped, {summary['computed_shards']} shard(s) computed "
        f"in {summary['seconds']:.1f} s → {summary['path']}",
        highlight=False,
    )


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
