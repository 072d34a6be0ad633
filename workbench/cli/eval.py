"""`wb eval CHECKPOINT --suite NAME`: task evals and the lm-eval regression slice, recorded in the store."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line, store_for
from workbench.cli.output import emit_json, info, out


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


def eval_cmd(
    checkpoint: str = typer.Argument(..., help="'default', an HF model folder, a PEFT adapter folder or a .gguf file."),
    suite: str = typer.Option(..., "--suite", "-s", help="Suite name (evals/suites) or path to a suite YAML."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Run id to compare against when done."),
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
    from workbench.home import data_dir as resolve_data_dir

    # Everything the user gave is checked here, before a model loads or the store is touched.
    loaded = load_suite(suite, evals_dir=evals_dir, limit=limit)
    ckpt = resolve_checkpoint(checkpoint)
    st = store_for(store)
    base_run = st.resolve(baseline) if baseline else None
    mirror = resolve_data_dir(data_dir)
    plans = [] if no_harness else [_harness_plan(spec, ckpt, mirror, limit) for spec in loaded.config.harness]

    from workbench.cli.progress import bars

    info(f"evaluating {ckpt.name} ({ckpt.kind}, {ckpt.format}) on suite {loaded.config.name}")
    with bars() as progress:
        run = run_suite(ckpt, loaded, st, EvalOptions(data_dir=mirror, limit=limit, command=command_line()),
                        harness_plans=plans, progress=progress)
    from workbench.compare import compare_runs, render_table, results_table

    if json_out:
        payload = {"run_id": run.run_id, "checkpoint": run.manifest["checkpoint"], "metrics": run.metrics}
        if base_run:
            payload["comparison"] = compare_runs(base_run, run).to_dict()
        emit_json(payload)
        return
    out.print(results_table(run))
    if base_run:
        out.print(render_table(compare_runs(base_run, run)))
    info(f"run {run.run_id} recorded in {st.root}")


def _harness_plan(spec, ckpt, mirror, limit) -> dict:
    from workbench.errors import BadInput
    from workbench.eval.harness import check_harness

    if ckpt.format == "gguf":
        raise BadInput(f"checkpoint '{ckpt.path}': lm-eval regression tasks run on HF checkpoints here; "
                       "use --no-harness for a GGUF file")
    plan = dict(tasks=spec.tasks, data_dir=mirror, limit=limit if limit is not None else spec.limit,
                num_fewshot=spec.num_fewshot, batch_size=spec.batch_size,
                apply_chat_template=spec.apply_chat_template, gen_kwargs=spec.gen_kwargs or None)
    check_harness(plan["tasks"], data_dir=mirror)
    return plan
