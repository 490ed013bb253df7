"""A progress bar for work done in distilabel's step processes, read from the checkpoints."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def watch(description: str, total: int, count: Callable[[], int], every: float = 1.0) -> Iterator[None]:
    """Show `count()` against `total` until the block ends (polled, so no IPC is needed)."""
    stop = threading.Event()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task(description, total=total, completed=count())

        def poll() -> None:
            while not stop.wait(every):
                progress.update(task, completed=count())

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            progress.update(task, completed=count())
