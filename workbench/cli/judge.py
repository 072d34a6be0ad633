"""`wb judge RUN [--baseline RUN]`: grade a recorded run's answers with the suite's LLM judge scorers again."""

from pathlib import Path

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line
from workbench.cli.output import emit_json, out
from workbench.system.console import info


def register(app: typer.Typer) -> None:
    app.command("judge")(judge_cmd)


def judge_cmd(
    run_ref: str = typer.Argument(..., metavar="RUN", help="The eval run whose answers to grade (id, prefix or 'latest')."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Another run of the same suite: judge_pairwise scorers compare RUN's answers with it."),
    suite: str | None = typer.Option(
        None, "--suite", "-s", help="Suite name or YAML with the judge scorers (default: the run's own suite file)."),
    judge_url: str | None = typer.Option(
        None, "--judge-url", help="An OpenAI-compatible endpoint (default: the suite's; else a local llama.cpp server)."),
    judge_model: str | None = typer.Option(
        None, "--judge-model", help="The endpoint's model name, or a .gguf file / 'default' for the local server."),
    judge_key_env: str | None = typer.Option(
        None, "--judge-key-env", help="NAME of the environment variable that holds the endpoint's API key."),
    evals_dir: str | None = typer.Option(None, "--evals-dir", help="Your own evals folder (default: bundled)."),
    store: Path | None = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Grade a recorded run with an LLM judge (rubric, and pairwise against --baseline); records a 'judge' run."""
    from workbench.judge.rejudge import rejudge

    run = rejudge(run_ref, baseline=baseline, suite=suite, judge_url=judge_url, judge_model=judge_model,
                  judge_key_env=judge_key_env, evals_dir=evals_dir, store=store, command=command_line())
    if json_out:
        emit_json({"run_id": run.run_id, "source_run": run.manifest["source_run"], "metrics": run.metrics,
                   "judge": run.manifest["judge"]})
    else:
        from workbench.compare.runs import results_table

        out.print(results_table(run))
        info(f"run {run.run_id} recorded in {run.path.parents[1]}")
