"""`wb judge RUN [--baseline RUN]`: grade a recorded run's answers with the suite's LLM judge scorers again."""

from pathlib import Path

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line
from workbench.cli.output import emit_json, out
from workbench.store.runs import Store
from workbench.system.console import err, info


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
    from workbench.errors import BadInput
    from workbench.eval.suites import load_suite
    from workbench.judge.rejudge import judge_overrides, judge_run
    from workbench.judge.reliability import summary_lines
    from workbench.judge.session import check_judge

    st = Store.open(store)
    source = st.resolve(run_ref)
    base_run = st.resolve(baseline) if baseline else None
    for option, run in (("RUN", source), ("--baseline", base_run)):
        if run is not None and run.manifest.get("kind") not in ("eval", "judge"):
            raise BadInput(f"{option} {run.run_id} is a {run.manifest.get('kind')} run; wb judge grades the answers "
                           "of an eval run")
    loaded = load_suite(suite or source.manifest.get("suite_path") or source.manifest.get("suite", ""),
                        evals_dir=evals_dir)
    loaded.config.judge = judge_overrides(loaded.config.judge, base_url=judge_url, model=judge_model,
                                          api_key_env=judge_key_env)
    check_judge(loaded.config.judge)

    from workbench.system.progress import bars

    info(f"judging run {source.run_id}" + (f" against {base_run.run_id}" if base_run else ""))
    with bars() as progress:
        run = judge_run(st, source, loaded, baseline=base_run, command=command_line(), progress=progress)
    for line in summary_lines(run.manifest.get("judge")):
        err.print(line, soft_wrap=True, markup=False)
    if json_out:
        emit_json({"run_id": run.run_id, "source_run": source.run_id, "metrics": run.metrics,
                   "judge": run.manifest["judge"]})
    else:
        from workbench.compare.runs import results_table

        out.print(results_table(run))
        info(f"run {run.run_id} recorded in {st.root}")
