"""The whole sweep's progress: units done, running, failed, and an ETA from the units finished so far."""

import time
from dataclasses import dataclass, field


@dataclass
class UnitState:
    state: str = "pending"  # pending | running | ok | failed
    attempts: int = 0  # times a worker started it (more than one: its worker died and Ray ran it again)
    where: str | None = None


@dataclass
class SweepProgress:
    units: dict[str, UnitState]
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, unit_ids: list[str]) -> "SweepProgress":
        return cls({u: UnitState() for u in unit_ids})

    def mark(self, unit: str, state: str, *, where: str | None = None, attempts: int | None = None) -> None:
        s = self.units[unit]
        if s.state in ("ok", "failed"):  # landed: a late report of an earlier attempt changes nothing
            return
        s.state = state
        s.where = where or s.where
        if attempts is not None:
            s.attempts = max(s.attempts, attempts)

    def count(self, state: str) -> int:
        return sum(1 for s in self.units.values() if s.state == state)

    def line(self) -> str:
        total, done, failed = len(self.units), self.count("ok"), self.count("failed")
        finished = done + failed
        elapsed = time.monotonic() - self.started
        text = (f"sweep: {finished}/{total} units finished ({done} ok, {failed} failed), "
                f"{self.count('running')} running, {elapsed:.0f} s")
        if 0 < finished < total:
            text += f", eta {elapsed / finished * (total - finished):.0f} s"
        return text


class LocalReporter:
    """What a worker calls as units start and end, for an in-process sweep."""

    def __init__(self, progress: SweepProgress, on_change):
        self.progress, self.on_change = progress, on_change

    def started(self, unit: str, where: str) -> None:
        self.progress.units[unit].attempts += 1
        self.progress.mark(unit, "running", where=where)
        self.on_change()

    def finished(self, unit: str, status: str) -> None:
        pass  # the driver marks a unit finished when its run lands
