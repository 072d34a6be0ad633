"""`wb review stats RUN [RUN2]` and `wb review export RUN [RUN2] -o gold.jsonl`: what people's labels say (docs/review.md)."""

from pathlib import Path

import typer

from workbench.cli.options import JsonOpt, StoreOpt
from workbench.cli.output import emit_json, out
from workbench.system.console import info

app = typer.Typer(help="Human review: agreement statistics and gold files from the labels given in the dashboard.",
                  no_args_is_help=True)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="review")


RunArg = typer.Argument(..., metavar="RUN", help="The run reviewed (rubric labels); with RUN2 the baseline A of a "
                                                 "pairwise review (id, prefix or 'latest').")
Run2Arg = typer.Argument(None, metavar="[RUN2]", help="The candidate B of a pairwise review: a run of the same suite.")
TaskOpt = typer.Option(None, "--task", "-t", help="Only this suite task's labels.")
OutputOpt = typer.Option(..., "--output", "-o", help="The gold JSONL file to write.")


@app.command("stats")
def stats_cmd(run: str = RunArg, run2: str | None = Run2Arg, task: str | None = TaskOpt,
              store: Path | None = StoreOpt, json_out: bool = JsonOpt):
    """Labels per reviewer, agreement between reviewers, B's human win rate and the judge's agreement with people."""
    from workbench.review.stats import review_runs, review_stats
    from workbench.store.runs import Store

    st = Store.open(store, writing=False)
    report = review_stats(st, review_runs(st, [run] + ([run2] if run2 else [])), task)
    if json_out:
        emit_json(report)
        return
    if not report["labels"]:
        info(f"no {report['kind']} labels of run(s) {' and '.join(report['runs'])} yet: label them on the "
             "dashboard's Review page (wb dashboard)")
        return
    out.print(_table(report))


def _table(report: dict):
    from rich.table import Table

    from workbench.review.stats import report_rows
    from workbench.system.console import plain

    table = Table(title=f"{report['kind']} review of {' vs '.join(report['runs'])} ({report['labels']} labels)")
    for col in ("task", "what", "value", "95% CI", "n"):
        table.add_column(col, overflow="fold")
    for row in report_rows(report):
        table.add_row(*(plain(row[k]) for k in ("task", "what", "value", "95% CI", "n")))
    return table


@app.command("export")
def export_cmd(run: str = RunArg, run2: str | None = Run2Arg, task: str | None = TaskOpt,
               output: Path = OutputOpt,
               store: Path | None = StoreOpt, json_out: bool = JsonOpt):
    """Write the labels' majority as a gold file: rubric labels as a suite task's `gold:` ({id, answer, score})."""
    from workbench.review.gold import export_gold
    from workbench.review.stats import review_runs
    from workbench.store.runs import Store

    st = Store.open(store, writing=False)
    rows = export_gold(st, review_runs(st, [run] + ([run2] if run2 else [])), output, task)
    if json_out:
        emit_json({"output": str(output), "rows": len(rows)})
    else:
        info(f"{len(rows)} gold rows written to {output}")
