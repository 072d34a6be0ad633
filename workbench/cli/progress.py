"""Rich progress bars on stderr: items done / total, rate and ETA."""

from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from workbench.cli.output import err


class Bars:
    def __init__(self, progress: Progress):
        self._progress = progress

    def task(self, description: str, total: int):
        task_id = self._progress.add_task(description, total=total)
        return lambda n=1: self._progress.advance(task_id, n)


@contextmanager
def bars():
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(),
                        TextColumn("eta"), TimeRemainingColumn(), console=err, transient=False)
    with progress:
        yield Bars(progress)
