"""`wb sweep SWEEP.yaml` as a function: every checkpoint × suite of a sweep file as independent eval units, in this
process or as Ray tasks on a cluster, each unit's run landed once in the store, recorded as a 'sweep' run."""

import os
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import BadInput
from workbench.store.runs import Store
from workbench.system.console import err, info, library_stdout_to_stderr


@dataclass
class SweepResult:
    run_id: str
    units: list[dict]  # per unit, in plan order: unit, checkpoint, suite, status, run_id | error, attempts, ...
    columns: list[str]  # the leaderboard's metric columns (suite / task / metric)
    rows: list[dict]  # the leaderboard: one row per checkpoint, best first by the first column
    store: Path
    exit_code: int = 0  # 0 when every unit landed; else the highest failing unit's (3 bad input, 4 environment)

    @property
    def failed(self) -> list[dict]:
        return [u for u in self.units if u["status"] != "ok"]

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "units": self.units, "leaderboard": {"columns": self.columns,
                                                                             "rows": self.rows}}


def sweep(sweep_file: str | os.PathLike, *, ray: str | None = None, local: bool = False,
          store: Store | str | os.PathLike | None = None, command: str = "workbench.sweep") -> SweepResult:
    """Evaluate many checkpoints on many suites. sweep_file: checkpoints (paths, globs, hub ids), suites and/or
    tasks, and any eval setting; ray: run the units as Ray tasks on this cluster (host:port, ray://host:port or
    auto); local: in this process, one after another (the default without ray). Failed units are in the result
    (`failed`, `exit_code`); every input is checked before any unit runs."""
    from workbench.data.records import sha256_file
    from workbench.sweep.config import load_sweep
    from workbench.sweep.driver import Lander, run_local, run_on_ray
    from workbench.sweep.leaderboard import leaderboard
    from workbench.sweep.plan import plan_sweep
    from workbench.sweep.progress import SweepProgress

    if ray and local:
        raise BadInput("give --ray ADDRESS or --local, not both")
    sweep_file = Path(sweep_file)
    config = load_sweep(sweep_file)
    groups, settings = plan_sweep(config, sweep_file.resolve())  # every input checked: exit 3 before any unit
    st = Store.open(store)
    units = [u for g in groups for u in g.units]
    runner = None
    if ray:
        from workbench.sweep.ray_cluster import RayRunner, connect

        runner = RayRunner(connect(ray), config.resources, config.max_retries)
    try:
        executor = ({"ray": ray, "nodes": runner.nodes(), "resources": config.resources.model_dump(),
                     "max_retries": config.max_retries} if runner else {"local": True})
        where = (f"as Ray tasks on {ray} ({sum(n['alive'] for n in executor['nodes'])} nodes)"
                 if runner else "in this process")
        checkpoints = len({u.ref for u in units})
        engines = (f" on {len(groups)} vLLM engine{'s' if len(groups) > 1 else ''} (adapters as LoRA requests)"
                   if settings.run_options["backend"] == "vllm" else "")
        info(f"sweep {sweep_file}: {checkpoints} checkpoints × {len(units) // max(checkpoints, 1)} suites = "
             f"{len(units)} units, {where}{engines}")
        progress = SweepProgress.of([u.id for u in units])
        said = [None]

        def say(message: str | None) -> None:
            if message:
                err.print(message, markup=False, soft_wrap=True)
            key = (progress.count("ok"), progress.count("failed"), progress.count("running"))
            if key != said[0]:
                said[0] = key
                err.print(progress.line(), markup=False, highlight=False, soft_wrap=True)

        manifest = {"command": command, "sweep_file": str(sweep_file.resolve()),
                    "sweep_sha": sha256_file(sweep_file), "config": config.model_dump(), "executor": executor,
                    "units": [{"unit": u.id, "checkpoint": u.checkpoint, "suite": u.suite_label,
                               "status": "pending"} for u in units]}
        lander = Lander(st, groups, progress, say)
        with st.open_run("sweep", manifest) as run, library_stdout_to_stderr():
            try:
                outcome = run_on_ray(groups, settings, lander, runner) if runner else run_local(groups, settings,
                                                                                                 lander)
            finally:  # what landed so far is recorded, Ctrl-C included
                run.manifest["units"] = lander.result().units
            run.add_metric("sweep", "units_ok", len(units) - len(outcome.failed), n=len(units))
            run.add_metric("sweep", "units_failed", len(outcome.failed), n=len(units), higher_is_better=False)
    finally:
        if runner:
            runner.close()
    columns, rows = leaderboard(st, outcome.units)
    return SweepResult(run.run_id, outcome.units, columns, rows, st.root, outcome.exit_code)
