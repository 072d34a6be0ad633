"""The sweep's driver: runs the groups (in-process or on Ray), lands every finished unit's run in the store
exactly once, and keeps the progress line."""

from dataclasses import dataclass

from workbench.errors import EXIT_ENVIRONMENT
from workbench.store import Store
from workbench.sweep.plan import Group, Settings
from workbench.sweep.progress import LocalReporter, SweepProgress


@dataclass
class SweepOutcome:
    units: list[dict]  # per unit, in plan order: {"unit", "checkpoint", "suite", "status", "run_id"|"error", ...}

    @property
    def failed(self) -> list[dict]:
        return [u for u in self.units if u["status"] != "ok"]

    @property
    def exit_code(self) -> int:
        """0 when every unit landed; else the highest failing unit's code (3 bad input, 4 environment)."""
        return max((u.get("exit_code") or EXIT_ENVIRONMENT for u in self.failed), default=0)


class Lander:
    """Writes each unit's run into the store once, however many times a result for it arrives."""

    def __init__(self, store: Store, groups: list[Group], progress: SweepProgress, say):
        self.store, self.progress, self.say = store, progress, say
        self.units = {u.id: u for g in groups for u in g.units}
        self.outcomes: dict[str, dict] = {}

    def land(self, outcome: dict) -> None:
        unit = outcome["unit"]
        files = outcome.pop("files", None)
        if self.outcomes.get(unit, {}).get("status") == "ok":
            return
        if outcome["status"] == "ok":
            self.store.adopt_run(outcome["run_id"], files)
        spec = self.units[unit]
        attempts = self.progress.units[unit].attempts
        self.outcomes[unit] = {"unit": unit, "checkpoint": spec.checkpoint, "suite": spec.suite_label,
                               **outcome, "attempts": attempts}
        self.progress.mark(unit, outcome["status"])
        if outcome["status"] != "ok":
            self.say(f"unit {unit} failed: {outcome['error']}")
        self.say(None)

    def result(self) -> SweepOutcome:
        missing = {"status": "failed", "error": "no result came back", "exit_code": 4}
        return SweepOutcome([self.outcomes.get(u) or {"unit": u, "checkpoint": s.checkpoint, "suite": s.suite_label,
                                                      **missing} for u, s in self.units.items()])


def run_local(groups: list[Group], settings: Settings, lander: Lander) -> SweepOutcome:
    from workbench.sweep.worker import evaluate_group

    reporter = LocalReporter(lander.progress, lambda: lander.say(None))
    for group in groups:
        for outcome in evaluate_group(group, settings, reporter):
            lander.land(outcome)
    return lander.result()


def run_on_ray(groups: list[Group], settings: Settings, lander: Lander, runner) -> SweepOutcome:
    def tick(snapshot: dict) -> None:
        for unit, seen in snapshot.items():
            if unit in lander.progress.units and seen.get("state") == "running":
                lander.progress.mark(unit, "running", where=seen.get("where"), attempts=seen.get("attempts"))
            elif unit in lander.progress.units:
                lander.progress.units[unit].attempts = max(lander.progress.units[unit].attempts,
                                                           seen.get("attempts", 0))
        lander.say(None)

    for _group, outcomes in runner.run(groups, settings, tick):
        for outcome in outcomes:
            lander.land(outcome)
    return lander.result()
