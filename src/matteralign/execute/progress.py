"""Progress display of units of work (a Rich bar, a callback, or nothing)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["unit_progress"]


@contextmanager
def unit_progress(progress: bool | Callable[[int, int], None], total: int, label: str, *,
                  done: int = 0) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: a Rich bar (``progress=True``), ``progress(done, total)`` calls, or a no-op."""
    if callable(progress):
        state = [done]
        progress(done, total)

        def advance(n: int) -> None:
            state[0] += n
            progress(state[0], total)

        yield advance
        return
    if not progress:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), transient=False)
    task = bar.add_task(label, total=total, completed=done)
    bar.start()
    try:
        yield lambda n: bar.advance(task, n)
    finally:
        bar.stop()
