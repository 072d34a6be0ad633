"""Progress bars on stderr: items done / total, rate and ETA. A terminal gets rich's bars, redrawn in place;
anything else gets one line per task every few seconds (see workbench.system.console) and one when it ends."""

import contextlib
import time
from contextlib import contextmanager

from workbench.system.console import err, is_quiet, progress_interval


class Bars:
    def __init__(self, progress):
        self._progress = progress

    def task(self, description: str, total: int):
        task_id = self._progress.add_task(description, total=total)
        return lambda n=1: self._progress.advance(task_id, n)


class _LineTask:
    def __init__(self, description: str, total: int, interval: float):
        self.description, self.total, self.interval = description, total, interval
        self.done, self.start = 0, time.monotonic()
        self.last_line = self.start

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.description}: {self.done}/{self.total}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {rate:.2f}/s, {elapsed:.0f} s"
        if rate > 0 and self.done < self.total:
            text += f", eta {(self.total - self.done) / rate:.0f} s"
        return text

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.done >= self.total or now - self.last_line >= self.interval:
            self.last_line = now
            err.print(self.line(), markup=False, highlight=False, soft_wrap=True)


class LineProgress:
    """The same interface as rich's Progress, as occasional log lines for a log that is not a terminal."""

    def __init__(self, interval: float):
        self.interval = interval
        self.tasks: list[_LineTask] = []

    def add_task(self, description: str, total: int) -> int:
        task = _LineTask(description, total, self.interval)
        self.tasks.append(task)
        if self.interval != float("inf"):
            err.print(task.line(), markup=False, highlight=False, soft_wrap=True)  # what is running, and how much
        return len(self.tasks) - 1

    def advance(self, task_id: int, n: int = 1) -> None:
        self.tasks[task_id].advance(n)


@contextmanager
def bars(enabled: bool = True):
    """Progress for the tasks a piece of work adds (`Bars.task`); nothing shows when not `enabled` or quiet."""
    if not enabled or is_quiet() or not err.is_terminal:
        yield Bars(LineProgress(float("inf") if not enabled or is_quiet() else progress_interval()))
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(),
                        TextColumn("eta"), TimeRemainingColumn(), console=err, transient=False)
    with progress:
        yield Bars(progress)


class Steps:
    """One spinner line per step on stderr, with its elapsed time; where stderr is not a terminal (CI, a log),
    a line when a step starts, an occasional one with its detail, and one when it ends."""

    def __init__(self, enabled: bool):
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        enabled = enabled and not is_quiet()
        self.lines = enabled and not err.is_terminal
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=err, disable=not enabled or self.lines)
        self.console = err if enabled else None
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, description: str, timing: str | None = None):
        """Yields update(detail): shows how far a long step is, after its description."""
        task = self.progress.add_task(description, total=1)
        started = last = time.monotonic()
        self._line(f"{description} ...")

        def update(detail):
            nonlocal last
            self.progress.update(task, description=f"{description}: {detail}")
            if self.lines and time.monotonic() - last >= progress_interval():
                last = time.monotonic()
                self._line(f"{description}: {detail} ({last - started:.0f} s)")

        yield update
        if timing:
            self.seconds[timing] = round(time.monotonic() - started, 2)
        self.progress.update(task, completed=1)
        self._line(f"{description}: done in {time.monotonic() - started:.1f} s")

    def _line(self, message: str) -> None:
        if self.lines:
            self.console.print(message, soft_wrap=True, highlight=False, markup=False)

    def note(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, soft_wrap=True, highlight=False, markup=False)
