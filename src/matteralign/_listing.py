"""Listings for the command line: one set of rows, shown as a table, plain tab-separated text or JSON.

``table`` is for a terminal (Rich; long cells wrap, nothing is elided); ``plain`` (one line per row, cells
separated by tabs, a header line first) and ``json`` (a list of objects) are for pipes and scripts. The
default is ``table`` on a terminal and ``plain`` when the output is piped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import InputError

__all__ = ["FORMATS", "resolve_format", "emit"]

FORMATS = ("table", "plain", "json")


def resolve_format(fmt: str | None, stream=None) -> str:
    """``fmt``, or ``"table"`` on a terminal and ``"plain"`` when ``stream`` (stdout) is not one."""
    if fmt is None:
        stream = sys.stdout if stream is None else stream
        return "table" if getattr(stream, "isatty", lambda: False)() else "plain"
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {list(FORMATS)}; got {fmt!r}.")
    return fmt


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    return str(value)


def emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    fmt: str | None = None,
    title: str = "",
    records: Sequence[dict[str, Any]] | None = None,
) -> None:
    """Print ``rows`` (dicts) in ``fmt``; ``columns`` are the keys shown by ``table`` and ``plain``.

    ``records`` (default: ``rows``) are what ``json`` prints, so JSON may carry more fields than the columns.
    Table cells wrap between words at the terminal's width but are never cut: the first column (the name)
    keeps its full width.
    """
    fmt = resolve_format(fmt)
    if fmt == "json":
        sys.stdout.write(
            json.dumps(list(records if records is not None else rows), indent=1, default=str) + "\n"
        )
        return
    if fmt == "plain":
        lines = ["\t".join(columns)]
        lines += [
            "\t".join(_cell(r.get(c)).replace("\t", " ").replace("\n", " ") for c in columns) for r in rows
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    # every column at least as wide as its longest word (the first column: its longest cell), so cells wrap
    # between words and no name is ever cut; a console narrower than that gets a wider table, not a cut one
    widths = []
    for j, c in enumerate(columns):
        texts = [c] + [row[j] for row in cells]
        words = texts if j == 0 else [w for t in texts for w in t.split()]
        widths.append(max(len(w) for w in words) if words else 1)
    table = Table(title=title or None, box=box.SIMPLE_HEAD, pad_edge=False)
    for j, c in enumerate(columns):
        table.add_column(c, min_width=widths[j], no_wrap=j == 0, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console = Console()
    console.width = max(
        console.width, console.measure(table, options=console.options.update_width(10**5)).minimum
    )
    console.print(table, crop=False)
