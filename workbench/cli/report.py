"""`wb report RUN [RUN ...] -o report.html`: one self-contained HTML page of runs, for a CI artifact."""

from pathlib import Path

import typer

from workbench.cli.options import StoreOpt
from workbench.system.console import info


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    runs: list[str] = typer.Argument(..., help="Run ids (or unique prefixes/suffixes, or 'latest'); the first is "
                                               "the reference the others are compared with."),
    output: Path = typer.Option(..., "--output", "-o", help="The HTML file to write (its folder must exist)."),
    samples: int = typer.Option(100, "--samples", min=1, help="At most N items per task in the samples section "
                                                              "(those the runs scored differently first)."),
    gates_file: Path | None = typer.Option(
        None, "--gates", help="Gates YAML to apply: to the one run, or to the second of two against the first."),
    allow_differences: bool = typer.Option(
        False, "--allow-differences", help="Compare even when settings that change scores differ (listed)."),
    store: Path | None = StoreOpt,
):
    """Write an HTML report: the runs' identity and metrics (table and charts), each later run compared with the
    first (paired counts and the gates' significance verdicts), per-tag breakdowns, and the samples side by side
    with a filter for the items the runs scored differently. Plotly's script is inline: no server, no network."""
    from workbench.report.render import report_runs

    path = report_runs(runs, output, store=store, samples=samples, gates=gates_file,
                       allow_differences=allow_differences)
    info(f"report: {path}")
