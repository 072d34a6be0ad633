"""`wb sweep SWEEP.yaml`: every checkpoint × suite of a sweep file as independent eval units, in this process
(--local) or as Ray tasks on a cluster (--ray ADDRESS), each unit's run landed once in the store, then a
leaderboard (workbench.sweep.pipeline)."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line
from workbench.cli.output import emit_json, out
from workbench.system.console import info


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
    from workbench.errors import WorkbenchError
    from workbench.sweep.leaderboard import leaderboard_table
    from workbench.sweep.pipeline import sweep as run_sweep

    result = run_sweep(sweep_file, ray=ray_address, local=local, store=store, command=command_line())
    n, failed = len(result.units), result.failed
    if json_out:
        emit_json(result.to_dict())
    else:
        out.print(leaderboard_table(result.columns, result.rows, f"sweep {result.run_id}"))
        info(f"sweep {result.run_id}: {n - len(failed)} of {n} units recorded in {result.store}")
    if failed:
        raise WorkbenchError.with_exit_code(f"{len(failed)} of {n} units failed: "
                                            + "; ".join(f"{u['unit']}: {u['error']}" for u in failed),
                                            result.exit_code)
