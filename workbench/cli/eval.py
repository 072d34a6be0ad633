"""`wb eval CHECKPOINT --suite NAME`: task evals and the lm-eval regression slice, recorded in the store."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line, store_for
from workbench.cli.output import emit_json, out
from workbench.errors import BadInput, GateFailed
from workbench.system.console import info, library_stdout_to_stderr


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


def eval_cmd(
    checkpoint: str = typer.Argument(..., help="'default', an HF model folder, a PEFT adapter folder or a .gguf file."),
    suite: str | None = typer.Option(
        None, "--suite", "-s", help="Suite name (evals/suites, e.g. 'regression') or path to a suite YAML."),
    tasks: str | None = typer.Option(
        None, "--tasks", "-t", help="lm-eval task, group or tag names, comma-separated (instead of --suite)."),
    include_path: Path | None = typer.Option(
        None, "--include-path", help="A folder of your own lm-eval task YAML (with --tasks, or for a suite's harness)."),
    base: str | None = typer.Option(
        None, "--base", help="For a PEFT adapter: the base model to put it on (checked to fit; default: its own)."),
    num_fewshot: int | None = typer.Option(None, "--num-fewshot", min=0, help="lm-eval: few-shot examples."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="lm-eval: batch size (default 8)."),
    chat_template: bool | None = typer.Option(
        None, "--chat-template/--no-chat-template", help="lm-eval: apply the model's chat template (default off)."),
    gen_kwargs: str | None = typer.Option(
        None, "--gen-kwargs", help="lm-eval: generation overrides, e.g. max_gen_toks=128,temperature=0."),
    seed: int = typer.Option(1234, "--seed", help="lm-eval: python/numpy/torch/few-shot seed."),
    dtype: str = typer.Option(
        "float32", "--dtype", help="lm-eval and the vLLM engine: weights dtype (auto, float32, bfloat16, ...)."),
    device: str = typer.Option("auto", "--device", help="lm-eval: 'auto' (cuda when available, else cpu), cpu, cuda."),
    backend: str = typer.Option(
        "auto", "--backend", help="Model backend: auto (hf; llamacpp for .gguf), hf, vllm (the task generations "
                                   "too; an adapter as a LoRA request), llamacpp."),
    vllm_args: str | None = typer.Option(
        None, "--vllm-args", help="With --backend vllm: engine arguments, e.g. tensor_parallel_size=2,"
                                  "gpu_memory_utilization=0.8,max_model_len=4096."),
    no_cache: bool = typer.Option(False, "--no-cache", help="lm-eval: recompute everything (no result/request cache)."),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Run id to compare and gate against, or a checkpoint to evaluate on the suite first."),
    gates_file: Optional[Path] = typer.Option(
        None, "--gates", help="Gates YAML (a top-level 'gates:' list); replaces the suite's own gates."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the gate results as JUnit XML."),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", help="Write the gate summary as Markdown (appended to $GITHUB_STEP_SUMMARY when set)."),
    gate_json: Optional[Path] = typer.Option(None, "--gate-json", help="Write the gate results as JSON."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N items per task."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Local benchmark mirror (default: $WB_DATA_DIR)."),
    no_harness: bool = typer.Option(False, "--no-harness", help="Skip the suite's lm-eval regression tasks."),
    evals_dir: Optional[str] = typer.Option(None, "--evals-dir", help="Your own evals folder (default: bundled)."),
    mlflow: Optional[str] = typer.Option(
        None, "--mlflow", help="Also log the run to this MLflow tracking URI ('env': $MLFLOW_TRACKING_URI): "
                               "metrics, the manifest as params, run.json + results.json as artifacts."),
    mlflow_experiment: Optional[str] = typer.Option(
        None, "--mlflow-experiment", help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else 'wb')."),
    matrix: bool = typer.Option(
        False, "--matrix", help="Also evaluate what was made from CHECKPOINT (its merged model and exported files, "
                                "from the store's merge/export runs), each in its runtime; one table of paired "
                                "deltas against CHECKPOINT."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Evaluate a checkpoint on a suite and record the run."""
    if matrix:
        from workbench.eval.matrix import refuse_options

        refuse_options({"--baseline": baseline, "--gates": gates_file, "--junit": junit, "--markdown": markdown,
                        "--gate-json": gate_json, "--mlflow": mlflow, "--base": base})
    from workbench.eval.request import (
        check_suite_choice,
        checked_checkpoint,
        harness_overrides,
        load_request,
        parse_kwargs,
        run_options,
    )
    from workbench.eval.runner import EvalOptions, harness_plan, prepare_harness, run_suite
    from workbench.gate.rules import check_gates, load_gates
    from workbench.system.home import data_dir as resolve_data_dir

    # Everything the user gave is checked here, before a model loads or the store is touched. Cheap checks
    # come first; the checkpoint before any data (data checks may wait on the hub); resolving 'default'
    # converts the default model on its first use only (a minute, once).
    overrides = harness_overrides(num_fewshot, batch_size, chat_template, gen_kwargs, include_path)
    check_suite_choice(suite, tasks)
    run_opts = run_options(seed=seed, dtype=dtype, device=device, backend=backend, no_cache=no_cache,
                           vllm_args=parse_kwargs(vllm_args, "--vllm-args") if vllm_args else None)
    from workbench.system.output_paths import check_new_file

    for path, what in ((junit, "--junit"), (markdown, "--markdown"), (gate_json, "--gate-json")):
        if path is not None:
            check_new_file(path, what)
    loaded, specs = load_request(suite, tasks, overrides, evals_dir=evals_dir, limit=limit, no_harness=no_harness)
    gates = load_gates(gates_file) if gates_file else loaded.config.gates
    if not gates and (junit or markdown or gate_json):
        raise BadInput("--junit, --markdown and --gate-json report on gates: the suite has none and no --gates given")
    mirror = resolve_data_dir(data_dir)
    # The checkpoint's files before lm-eval's tasks: building those reads their data, which `datasets` caches.
    ckpt = checked_checkpoint(checkpoint, base)
    from workbench.eval.harness import check_backend

    check_backend(backend, ckpt, run_opts["vllm_args"])  # task generations run on it too (vLLM), harness or not
    prepared = [prepare_harness(spec, mirror) for spec in specs]  # builds lm-eval's tasks: bad names/data fail here
    st = store_for(store)
    tracking = _mlflow_target(mlflow, mlflow_experiment)
    base_run, base_ckpt = _resolve_baseline(st, baseline) if baseline else (None, None)
    check_gates(gates, loaded.config, base_run, lm_eval_tasks=set().union(*(p.task_names() for p in prepared)))
    if loaded.uses_judge:
        from workbench.judge.session import check_judge

        check_judge(loaded.config.judge)
    if matrix:
        from workbench.cli.eval_matrix import eval_matrix

        return eval_matrix(ckpt, loaded, specs, prepared, st, mirror=mirror, limit=limit, run_opts=run_opts,
                           json_out=json_out)
    if base_ckpt is not None:
        from workbench.checkpoints.checks import record_checks

        record_checks(base_ckpt)
    plans = [harness_plan(spec, ckpt, mirror, limit, run_opts, prep) for spec, prep in zip(specs, prepared)]
    base_plans = [] if base_ckpt is None else [
        harness_plan(spec, base_ckpt, mirror, limit, run_opts) for spec in specs]

    from workbench.system.progress import bars

    if base_ckpt is not None:
        info(f"evaluating baseline {base_ckpt.name} ({base_ckpt.kind}, {base_ckpt.format}) "
             f"on suite {loaded.config.name}")
        with bars() as progress, library_stdout_to_stderr():
            base_run = run_suite(base_ckpt, loaded, st,
                                 EvalOptions(data_dir=mirror, limit=limit, command=command_line(),
                                             run_options=run_opts),
                                 harness_plans=base_plans, progress=progress)
    info(f"evaluating {ckpt.name} ({ckpt.kind}, {ckpt.format}) on suite {loaded.config.name}")
    with bars() as progress, library_stdout_to_stderr():
        run = run_suite(ckpt, loaded, st, EvalOptions(data_dir=mirror, limit=limit, command=command_line(),
                                                      baseline=base_run, run_options=run_opts),
                        harness_plans=plans, progress=progress)
    from workbench.judge.reliability import summary_lines
    from workbench.system.console import err

    for line in summary_lines(run.manifest.get("judge")):
        err.print(line, soft_wrap=True, markup=False)
    if tracking:
        for logged in ([base_run] if base_ckpt is not None else []) + [run]:
            _log_to_mlflow(st, logged, *tracking)
    from workbench.compare.runs import compare_runs, render_table, results_table

    report = None
    if gates:
        from workbench.gate.reports import write_reports
        from workbench.gate.rules import evaluate_gates

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
            from workbench.gate.reports import gate_table

            out.print(gate_table(report))
        info(f"run {run.run_id} recorded in {st.root}")
    for entry in run.manifest.get("harness") or []:
        _cache_note(entry)
    if report and not report.passed:
        raise GateFailed(report.summary())  # exit 1, after every report is written


def _mlflow_target(value: str | None, experiment: str | None) -> tuple[str, str] | None:
    """(uri, experiment) for --mlflow, the server checked to answer before any model loads."""
    if value is None:
        return None
    import os

    from workbench.store.tracking import check_mlflow, mlflow_uri

    uri = mlflow_uri(value, os.environ.get("MLFLOW_TRACKING_URI"))
    check_mlflow(uri)
    return uri, experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "wb"


def _log_to_mlflow(st, run, uri: str, experiment: str) -> None:
    from workbench.errors import EnvironmentProblem
    from workbench.store.tracking import log_eval_run, redact_url

    try:
        with library_stdout_to_stderr():  # MLflow prints a "View run" line; --json's stdout is one object
            where = log_eval_run(run, uri, experiment)
    except Exception as exc:  # noqa: BLE001  (the run is recorded; say so, whatever MLflow raised)
        from workbench.system.failures import first_line

        raise EnvironmentProblem(f"run {run.run_id} is recorded in {st.root}, but logging it to MLflow at "
                                 f"{redact_url(uri)} failed: {first_line(exc)}") from None
    st.annotate(run, "mlflow", where)
    info(f"run {run.run_id} logged to MLflow {where['uri']} (experiment {experiment}, run {where['run_id']})")


def _cache_note(entry: dict) -> None:
    cache, tasks = entry.get("cache") or {}, ", ".join(entry.get("tasks") or [])
    if cache.get("result") == "hit":
        info(f"lm-eval {tasks}: served from the result cache (no model loaded)")
    elif cache.get("requests_cached"):
        info(f"lm-eval {tasks}: {cache['requests_cached']} requests answered from the request cache, "
             f"{cache['requests_computed']} computed")


def _resolve_baseline(st, ref: str):
    """(run, None) for a run in the store, else (None, checkpoint) to evaluate on the same suite first."""
    from workbench.checkpoints.resolve import resolve_checkpoint

    try:
        return st.resolve(ref), None
    except BadInput as not_a_run:
        from workbench.checkpoints.hub import parse_hub_id

        if ref != "default" and not Path(ref).expanduser().exists() and parse_hub_id(ref) is None:
            raise BadInput(f"--baseline '{ref}': not a run ({not_a_run}), a checkpoint path or a hub id") from None
    return None, resolve_checkpoint(ref)
