"""`wb compare RUN_A RUN_B`: a side-by-side table of two runs' metrics."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt
from workbench.cli.output import emit_json, out


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)


def compare(
    run_a: str = typer.Argument(..., help="Run id (or unique prefix/suffix, or 'latest')."),
    run_b: str = typer.Argument(..., help="Run id to compare against A."),
    samples: int = typer.Option(0, "--samples", help="Also show N per-sample outputs of A and B side by side."),
    allow_differences: bool = typer.Option(
        False, "--allow-differences", help="Compare even when settings that change scores differ (listed)."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Compare two runs metric by metric (B - A), with paired per-sample counts for task evals.

    Exits 3 when settings that change scores differ between the runs (each one named), unless
    --allow-differences is given; then the differences are listed under the table."""
    from workbench.compare.runs import compare as compare_two_runs
    from workbench.compare.runs import render_samples, render_table

    cmp = compare_two_runs(run_a, run_b, store=store, samples=samples, allow_differences=allow_differences)
    if json_out:
        emit_json(cmp.to_dict())
        return
    out.print(render_table(cmp))
    for table in render_samples(cmp, cmp.samples or {}):
        out.print(table)
