"""Terminal output shared by the commands: progress bars and summary tables (rich)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

console = Console(stderr=True)


@contextmanager
def row_progress(description: str, total: int | None, unit: str = "rows") -> Iterator:
    """A progress bar with a rate column; yields a function advance(n)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            t = progress.tasks[task]
            if t.elapsed:
                progress.update(task, rate=f"{t.completed / t.elapsed:.1f} {unit}/s")

        yield advance


def status_table(title: str, counts: dict[str, int], total: int) -> Table:
    table = Table(title=title)
    table.add_column("status")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    for status, n in sorted(counts.items(), key=lambda kv: (kv[0] != "ok", -kv[1])):
        table.add_row(status, str(n), f"{n / total:.1%}" if total else "-")
    table.add_row("[bold]total", f"[bold]{total}", "")
    return table
