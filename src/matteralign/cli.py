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


@app.command()
def run(
    study: str = typer.Argument(None, help="Study TOML file (default: the bundled default study)."),
    dataset: list[str] = typer.Option(None, "--dataset", help="Run only this dataset (repeatable)."),
    model: list[str] = typer.Option(None, "--model", help="Run only this model (repeatable)."),
    n: int = typer.Option(None, "--n", help="Samples per dataset (overrides the study)."),
    seed: int = typer.Option(None, "--seed", help="Seed for subsampling and random controls."),
    out: str = typer.Option(None, "--out", help="Output folder (store, results, report)."),
    print_default: bool = typer.Option(False, "--print-default", help="Print the default study and exit."),
):
    """Run a study: extract -> measure -> analyse -> report. Ends with the report's path."""
    from .study import Study, default_study_text

    if print_default:
        typer.echo(default_study_text(), nl=False)
        return
    s = Study.from_toml(study).override(datasets=dataset, models=model, n=n, seed=seed, out=out)
    results = s.run(progress=True)
    typer.echo(str(results.report.resolve()) if results.report else str(s.out.resolve()))


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
