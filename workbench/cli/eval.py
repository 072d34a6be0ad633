"""`wb eval CHECKPOINT --suite NAME`: task evals and the lm-eval regression slice, recorded in the store."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line
from workbench.cli.output import emit_json, out
from workbench.errors import GateFailed
from workbench.system.console import info


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


def eval_cmd(
    checkpoint: str | None = typer.Argument(
        None, help="'default', an HF model folder, a PEFT adapter folder, a .gguf file, a hub id, or an "
                   "OpenAI-compatible endpoint's base URL (http://HOST:PORT/v1, with --endpoint-model). Left out "
                   "with --outputs."),
    outputs: Path | None = typer.Option(
        None, "--outputs", help="Score recorded answers instead of a checkpoint's (no model loads): a JSONL file of "
                                "{\"id\", \"output\"} (a list of answers per turn for MT-Bench) or FastChat's "
                                "answer file; with --suite."),
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
        None, "--apply-chat-template/--no-apply-chat-template",
        help="lm-eval: apply the model's chat template (default off)."),
    template: str | None = typer.Option(
        None, "--chat-template", help="Prompt with this chat template instead of the checkpoint's own: a name (chatml, "
                                      "gemma, llama3, mistral, phi3, qwen3) or a .jinja file; needed for a base model "
                                      "without one. A checkpoint evaluated on another template than it was trained "
                                      "with is warned about."),
    gen_kwargs: str | None = typer.Option(
        None, "--gen-kwargs", help="lm-eval: generation overrides, e.g. max_gen_toks=128,temperature=0."),
    seed: int = typer.Option(1234, "--seed", help="lm-eval: python/numpy/torch/few-shot seed."),
    dtype: str = typer.Option(
        "float32", "--dtype", help="lm-eval and the vLLM engine: weights dtype (auto, float32, bfloat16, ...)."),
    device: str = typer.Option("auto", "--device", help="lm-eval: 'auto' (cuda when available, else cpu), cpu, cuda."),
    backend: str = typer.Option(
        "auto", "--backend", help="Model backend: auto (hf; llamacpp for .gguf; endpoint for a URL), hf, vllm (the "
                                   "task generations too; an adapter as a LoRA request), llamacpp, endpoint."),
    vllm_args: str | None = typer.Option(
        None, "--vllm-args", help="With --backend vllm: engine arguments, e.g. tensor_parallel_size=2,"
                                  "gpu_memory_utilization=0.8,max_model_len=4096."),
    endpoint_model: str | None = typer.Option(
        None, "--endpoint-model", help="For an endpoint URL: the served model's name (GET URL/models lists them)."),
    endpoint_key_env: str | None = typer.Option(
        None, "--endpoint-key-env", help="For an endpoint URL: the environment variable holding its API key."),
    endpoint_args: str | None = typer.Option(
        None, "--endpoint-args", help="For an endpoint URL: extra fields of every request, e.g. repeat_penalty=1.0 "
                                      "(llama-cpp-python's server penalises repeats by default)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="lm-eval: recompute everything (no result/request cache)."),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Run id to compare and gate against, or a checkpoint to evaluate on the suite first."),
    gates_file: Optional[Path] = typer.Option(
        None, "--gates", help="Gates YAML (a top-level 'gates:' list); replaces the suite's own gates."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the gate results as JUnit XML."),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", help="Write the gate summary as Markdown (appended to $GITHUB_STEP_SUMMARY when set)."),
    gate_json: Optional[Path] = typer.Option(None, "--gate-json", help="Write the gate results as JSON."),
    html: Optional[Path] = typer.Option(
        None, "--html", help="Write the HTML report of the run and its baseline, with the gates' results "
                             "(as `wb report`)."),
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
    no_reuse: bool = typer.Option(
        False, "--no-reuse", help="With --matrix: evaluate every member, even one the store holds an identical "
                                  "finished run of (same weights, suite, items, settings and versions)."),
    wide: bool = typer.Option(
        False, "--wide", help="With --matrix: every column and whole run ids (default: what fits the terminal)."),
    allow_uncalibrated_judge: bool = typer.Option(
        False, "--allow-uncalibrated-judge",
        help="Run gates on judge metrics even when the judge lacks enough human labels or agreement with them "
             "(docs/review.md); the run's manifest and the gate reports record it."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Evaluate a checkpoint on a suite and record the run."""
    options = dict(tasks=tasks, include_path=include_path, base=base, num_fewshot=num_fewshot, batch_size=batch_size,
                   chat_template=chat_template, template=template, gen_kwargs=gen_kwargs, seed=seed, dtype=dtype,
                   device=device, backend=backend, vllm_args=vllm_args, endpoint_model=endpoint_model,
                   endpoint_key_env=endpoint_key_env, endpoint_args=endpoint_args, no_cache=no_cache, limit=limit,
                   data_dir=data_dir, no_harness=no_harness, evals_dir=evals_dir, store=store,
                   command=command_line())
    if (checkpoint is None) == (outputs is None):
        raise typer.BadParameter("give a CHECKPOINT to evaluate, or --outputs FILE.jsonl (recorded answers), not both",
                                 param_hint="'CHECKPOINT' / '--outputs'")
    if not matrix and (no_reuse or wide):
        from workbench.errors import BadInput

        raise BadInput(f"{'--no-reuse' if no_reuse else '--wide'} applies to --matrix only")
    if matrix:
        from workbench.eval.matrix import evaluate_matrix, refuse_options

        refuse_options({"--outputs": outputs, "--chat-template": template,
                        "--baseline": baseline, "--gates": gates_file, "--junit": junit, "--markdown": markdown,
                        "--gate-json": gate_json, "--mlflow": mlflow, "--base": base, "--html": html,
                        "--allow-uncalibrated-judge": allow_uncalibrated_judge or None})
        from workbench.cli.eval_matrix import print_matrix

        return print_matrix(evaluate_matrix(checkpoint, suite, reuse=not no_reuse, **options), json_out=json_out,
                            wide=wide)
    from workbench.eval.pipeline import evaluate

    result = evaluate(checkpoint, suite, outputs=outputs,
                      baseline=baseline, gates=gates_file, junit=junit, markdown=markdown,
                      gate_json=gate_json, mlflow=mlflow, mlflow_experiment=mlflow_experiment, html=html,
                      allow_uncalibrated_judge=allow_uncalibrated_judge, **options)
    for path in result.reports:
        info(f"gate report: {path}")
    if json_out:
        emit_json(result.to_dict())
    else:
        from workbench.compare.runs import render_table, results_table

        out.print(results_table(result.run))
        if result.comparison is not None:
            out.print(render_table(result.comparison))
        if result.gate is not None:
            from workbench.gate.reports import gate_table

            out.print(gate_table(result.gate))
        info(f"run {result.run_id} recorded in {result.store.root}")
    for entry in result.run.manifest.get("harness") or []:
        _cache_note(entry)
    if not result.passed:
        raise GateFailed(result.gate.summary())  # exit 1, after every report is written


def _cache_note(entry: dict) -> None:
    cache, tasks = entry.get("cache") or {}, ", ".join(entry.get("tasks") or [])
    if cache.get("result") == "hit":
        info(f"lm-eval {tasks}: served from the result cache (no model loaded)")
    elif cache.get("requests_cached"):
        info(f"lm-eval {tasks}: {cache['requests_cached']} requests answered from the request cache, "
             f"{cache['requests_computed']} computed")
