"""`wb sweep SWEEP.yaml`: every checkpoint × suite of a sweep file as independent eval units, in this process
(--local) or as Ray tasks on a cluster (--ray ADDRESS), each unit's run landed once in the store, then a
leaderboard."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line, store_for
from workbench.cli.output import emit_json, out
from workbench.system.console import err, info, library_stdout_to_stderr


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


def sweep(
    sweep_file: Path = typer.Argument(..., help="Sweep YAML: checkpoints (paths, globs, hub ids), suites and/or "
                                                "tasks, and any wb eval setting."),
    ray_address: Optional[str] = typer.Option(
        None, "--ray", help="Run the units as Ray tasks on this cluster: host:port, ray://host:port or auto."),
    local: bool = typer.Option(False, "--local", help="Run the units in this process, one after another "
                                                      "(the default without --ray)."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Evaluate many checkpoints on many suites, on one machine or a Ray cluster."""
    from workbench.data.records import sha256_file
    from workbench.errors import BadInput, WorkbenchError
    from workbench.eval.harness import VLLM
    from workbench.sweep.config import load_sweep
    from workbench.sweep.driver import Lander, run_local, run_on_ray
    from workbench.sweep.leaderboard import leaderboard, leaderboard_table
    from workbench.sweep.plan import plan_sweep
    from workbench.sweep.progress import SweepProgress

    if ray_address and local:
        raise BadInput("give --ray ADDRESS or --local, not both")
    config = load_sweep(sweep_file)
    groups, settings = plan_sweep(config, sweep_file.resolve())  # every input checked: exit 3 before any unit
    st = store_for(store)
    units = [u for g in groups for u in g.units]
    runner = None
    if ray_address:
        from workbench.sweep.ray_cluster import RayRunner, connect

        runner = RayRunner(connect(ray_address), config.resources, config.max_retries)
    try:
        executor = ({"ray": ray_address, "nodes": runner.nodes(), "resources": config.resources.model_dump(),
                     "max_retries": config.max_retries} if runner else {"local": True})
        where = (f"as Ray tasks on {ray_address} ({sum(n['alive'] for n in executor['nodes'])} nodes)"
                 if runner else "in this process")
        checkpoints = len({u.ref for u in units})
        engines = (f" on {len(groups)} vLLM engine{'s' if len(groups) > 1 else ''} (adapters as LoRA requests)"
                   if settings.run_options["backend"] == VLLM else "")
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

        manifest = {"command": command_line(), "sweep_file": str(sweep_file.resolve()),
                    "sweep_sha": sha256_file(sweep_file), "config": config.model_dump(), "executor": executor,
                    "units": [{"unit": u.id, "checkpoint": u.checkpoint, "suite": u.suite_label,
                               "status": "pending"} for u in units]}
        lander = Lander(st, groups, progress, say)
        with st.open_run("sweep", manifest) as run, library_stdout_to_stderr():
            try:
                result = run_on_ray(groups, settings, lander, runner) if runner else run_local(groups, settings,
                                                                                                lander)
            finally:  # what landed so far is recorded, Ctrl-C included
                run.manifest["units"] = lander.result().units
            run.add_metric("sweep", "units_ok", len(units) - len(result.failed), n=len(units))
            run.add_metric("sweep", "units_failed", len(result.failed), n=len(units), higher_is_better=False)
    finally:
        if runner:
            runner.close()
    if json_out:
        columns, rows = leaderboard(st, result.units)
        emit_json({"run_id": run.run_id, "units": result.units, "leaderboard": {"columns": columns, "rows": rows}})
    else:
        out.print(leaderboard_table(st, result.units, f"sweep {run.run_id}"))
        info(f"sweep {run.run_id}: {len(units) - len(result.failed)} of {len(units)} units recorded in {st.root}")
    if result.failed:
        raise WorkbenchError.with_exit_code(f"{len(result.failed)} of {len(units)} units failed: "
                                            + "; ".join(f"{u['unit']}: {u['error']}" for u in result.failed),
                                            result.exit_code)
