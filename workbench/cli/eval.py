"""`wb eval CHECKPOINT --suite NAME`: task evals and the lm-eval regression slice, recorded in the store."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line, store_for
from workbench.cli.output import emit_json, info, out
from workbench.errors import BadInput, GateFailed


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


def eval_cmd(
    checkpoint: str = typer.Argument(..., help="'default', an HF model folder, a PEFT adapter folder or a .gguf file."),
    suite: str = typer.Option(..., "--suite", "-s", help="Suite name (evals/suites) or path to a suite YAML."),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Run id to compare and gate against, or a checkpoint to evaluate on the suite first."),
    gates_file: Optional[Path] = typer.Option(
        None, "--gates", help="Gates YAML (a top-level 'gates:' list); replaces the suite's own gates."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the gate results as JUnit XML."),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", help="Write the gate summary as Markdown (appended to $GITHUB_STEP_SUMMARY when set)."),
    gate_json: Optional[Path] = typer.Option(None, "--gate-json", help="Write the gate results as JSON."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N items per task."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Local benchmark mirror (default: $WB_DATA_DIR)."),
    no_harness: bool = typer.Option(False, "--no-harness", help="Skip the suite's lm-eval regression tasks."),
    evals_dir: Optional[str] = typer.Option(None, "--evals-dir", help="Your own evals folder (default: bundled)."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Evaluate a checkpoint on a suite and record the run."""
    from workbench.checkpoint import resolve_checkpoint
    from workbench.eval.runner import EvalOptions, run_suite
    from workbench.eval.suites import load_suite
    from workbench.gate import check_gates, load_gates
    from workbench.home import data_dir as resolve_data_dir

    # Everything the user gave is checked here, before a model loads or the store is touched.
    # Cheap checks come first: resolving 'default' may convert the default model (a minute, once).
    loaded = load_suite(suite, evals_dir=evals_dir, limit=limit)
    gates = load_gates(gates_file) if gates_file else loaded.config.gates
    if not gates and (junit or markdown or gate_json):
        raise BadInput("--junit, --markdown and --gate-json report on gates: the suite has none and no --gates given")
    mirror = resolve_data_dir(data_dir)
    if not no_harness and loaded.config.harness:
        from workbench.eval.harness import check_harness

        check_harness([t for spec in loaded.config.harness for t in spec.tasks], data_dir=mirror)
    st = store_for(store)
    base_run, base_ckpt = _resolve_baseline(st, baseline) if baseline else (None, None)
    check_gates(gates, loaded.config, base_run)
    if loaded.uses_judge:
        from workbench.judge.session import check_judge

        check_judge(loaded.config.judge)
    ckpt = resolve_checkpoint(checkpoint)
    plans = [] if no_harness else [_harness_plan(spec, ckpt, mirror, limit) for spec in loaded.config.harness]
    base_plans = [] if no_harness or base_ckpt is None else [
        _harness_plan(spec, base_ckpt, mirror, limit) for spec in loaded.config.harness]

    from workbench.cli.progress import bars

    if base_ckpt is not None:
        info(f"evaluating baseline {base_ckpt.name} ({base_ckpt.kind}, {base_ckpt.format}) "
             f"on suite {loaded.config.name}")
        with bars() as progress:
            base_run = run_suite(base_ckpt, loaded, st,
                                 EvalOptions(data_dir=mirror, limit=limit, command=command_line()),
                                 harness_plans=base_plans, progress=progress)
    info(f"evaluating {ckpt.name} ({ckpt.kind}, {ckpt.format}) on suite {loaded.config.name}")
    with bars() as progress:
        run = run_suite(ckpt, loaded, st, EvalOptions(data_dir=mirror, limit=limit, command=command_line(),
                                                      baseline=base_run),
                        harness_plans=plans, progress=progress)
    from workbench.cli.output import err
    from workbench.judge.reliability import summary_lines

    for line in summary_lines(run.manifest.get("judge")):
        err.print(line, soft_wrap=True, markup=False)
    from workbench.compare import compare_runs, render_table, results_table

    report = None
    if gates:
        from workbench.gate import evaluate_gates
        from workbench.reports import write_reports

        report = evaluate_gates(run, base_run, gates)
        for path in write_reports(report, junit=junit, markdown=markdown, json_path=gate_json):
            info(f"gate report: {path}")
    if json_out:
        payload = {"run_id": run.run_id, "checkpoint": run.manifest["checkpoint"], "metrics": run.metrics}
        if base_run:
            payload["comparison"] = compare_runs(base_run, run).to_dict()
        if report:
            payload["gate"] = report.to_dict()
        if run.manifest.get("judge"):
            payload["judge"] = run.manifest["judge"]
        emit_json(payload)
    else:
        out.print(results_table(run))
        if base_run:
            out.print(render_table(compare_runs(base_run, run)))
        if report:
            from workbench.reports import gate_table

            out.print(gate_table(report))
        info(f"run {run.run_id} recorded in {st.root}")
    if report and not report.passed:
        raise GateFailed(report.summary())  # exit 1, after every report is written


def _resolve_baseline(st, ref: str):
    """(run, None) for a run in the store, else (None, checkpoint) to evaluate on the same suite first."""
    from workbench.checkpoint import resolve_checkpoint

    try:
        return st.resolve(ref), None
    except BadInput as not_a_run:
        if ref != "default" and not Path(ref).expanduser().exists():
            raise BadInput(f"--baseline '{ref}': not a run ({not_a_run}) and not a checkpoint path") from None
    return None, resolve_checkpoint(ref)


def _harness_plan(spec, ckpt, mirror, limit) -> dict:
    if ckpt.format == "gguf":
        raise BadInput(f"checkpoint '{ckpt.path}': lm-eval regression tasks run on HF checkpoints here; "
                       "use --no-harness for a GGUF file")
    plan = dict(tasks=spec.tasks, data_dir=mirror, limit=limit if limit is not None else spec.limit,
                num_fewshot=spec.num_fewshot, batch_size=spec.batch_size,
                apply_chat_template=spec.apply_chat_template, gen_kwargs=spec.gen_kwargs or None)
    return plan
