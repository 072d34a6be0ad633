"""`workbench.evaluate`: a checkpoint on a suite (task evals and its lm-eval regression slice) or on lm-eval tasks,
recorded in the store, optionally against a baseline and gated. What `wb eval` runs.

    result = workbench.evaluate("out/adapter", suite="demo", baseline="default",
                                gates="evals/gates/release.yaml", junit="reports/gate.xml")
    result.run.metrics, result.comparison, result.gate.passed

Everything given is checked before a model loads or the store is touched (`prepare_eval`): cheap checks first,
then the checkpoint (resolving `default` converts the default model on its first use only), then lm-eval's tasks
(building them reads their data). The checkpoint then loads once, in its runtime, for every task of the suite.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.config import GateSpec
from workbench.errors import BadInput, EnvironmentProblem
from workbench.eval.request import (
    check_suite_choice,
    harness_overrides,
    load_request,
    parse_kwargs,
    run_options,
)
from workbench.eval.runner import EvalOptions, check_tools_rendered, harness_plan, prepare_harness, run_suite
from workbench.eval.suites import LoadedSuite
from workbench.eval.templates import choose_eval_template, needs_template, use_for_baseline
from workbench.runtimes import check_runtime, open_runtime
from workbench.runtimes.base import RuntimeOptions
from workbench.store import Run, Store
from workbench.system.console import err, info, library_stdout_to_stderr
from workbench.system.home import data_dir as resolve_data_dir
from workbench.system.output_paths import check_new_file

API_COMMAND = "workbench.evaluate"


@dataclass
class EvalRequest:
    """A checked `wb eval`: everything a run needs, nothing loaded yet."""

    checkpoint: Checkpoint | None  # None: recorded answers (`outputs`) are scored, no model
    suite: LoadedSuite
    harness_specs: list
    prepared: list  # lm-eval's tasks per harness entry, built
    gates: list[GateSpec]
    mirror: Path | None
    run_options: dict  # eval.request.run_options
    store: Store
    limit: int | None
    command: str
    baseline_run: Run | None = None
    baseline_checkpoint: Checkpoint | None = None
    judge_policy: list[dict] = field(default_factory=list)  # gate.judge_policy's record per judge gate
    recorded: dict | None = None  # --outputs: task -> item id -> answers per turn (eval.outputs)
    outputs: dict | None = None  # --outputs: the file, and what the manifest names instead of a checkpoint
    template: dict | None = None  # the chat template's record (workbench.eval.templates), for the checkpoint
    baseline_template: dict | None = None  # and for the baseline checkpoint

    @property
    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions.from_run_options(self.run_options)

    def plans(self, *, prepared: bool = True) -> list[dict]:
        """run_harness's keyword arguments per harness entry (`prepared`: with the tasks built for this request;
        another checkpoint builds its own, as lm-eval's task metadata carries the model's arguments)."""
        return [harness_plan(spec, self.mirror, self.limit, self.run_options, prep if prepared else None)
                for spec, prep in zip(self.harness_specs, self.prepared)]


@dataclass
class EvalResult:
    """A finished evaluation: its run, the baseline's run (evaluated first when a checkpoint was given), their
    comparison, and the gates' report (None without gates) with the report files written."""

    run: Run
    store: Store
    baseline: Run | None = None
    comparison: object | None = None  # compare.runs.Comparison
    gate: object | None = None  # gate.rules.GateReport
    reports: list[Path] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def metrics(self) -> list[dict]:
        return self.run.metrics

    @property
    def passed(self) -> bool:
        """False only when a gate failed."""
        return self.gate is None or self.gate.passed

    def to_dict(self) -> dict:
        """What `wb eval --json` prints."""
        payload = {"run_id": self.run.run_id, "checkpoint": self.run.manifest["checkpoint"],
                   "metrics": self.run.metrics}
        if self.comparison is not None:
            payload["comparison"] = self.comparison.to_dict()
        if self.gate is not None:
            payload["gate"] = self.gate.to_dict()
        if self.run.manifest.get("judge"):
            payload["judge"] = self.run.manifest["judge"]
        return payload


def prepare_eval(checkpoint: str | None, suite: str | None = None, *, outputs: str | Path | None = None,
                 tasks: str | list[str] | None = None,
                 include_path: str | Path | None = None, base: str | None = None, num_fewshot: int | None = None,
                 batch_size: int | None = None, chat_template: bool | None = None, template: str | None = None,
                 gen_kwargs: str | dict | None = None, seed: int = 1234, dtype: str = "float32",
                 device: str = "auto", backend: str = "auto", vllm_args: str | dict | None = None,
                 endpoint_model: str | None = None, endpoint_key_env: str | None = None,
                 endpoint_args: str | dict | None = None, no_cache: bool = False, baseline: str | None = None,
                 gates: str | Path | None = None, report_files: tuple = (), limit: int | None = None,
                 data_dir: str | Path | None = None, no_harness: bool = False, evals_dir: str | None = None,
                 store: str | Path | None = None, allow_uncalibrated_judge: bool = False,
                 command: str = API_COMMAND) -> EvalRequest:
    """Everything `evaluate` is given, checked, before a model loads or the store is touched. A gate on a judge
    metric needs the judge calibrated against human labels (gate.judge_policy) unless allow_uncalibrated_judge.
    `chat_template`: lm-eval's apply_chat_template; `template`: the chat template to prompt with instead of the
    checkpoint's own, a name or a .jinja file (workbench.eval.templates)."""
    from workbench.gate.judge_policy import judge_gate_policy
    from workbench.gate.rules import check_gates, load_gates

    tasks = ",".join(tasks) if isinstance(tasks, (list, tuple)) else tasks
    include_path = Path(include_path) if include_path else None
    overrides = harness_overrides(num_fewshot, batch_size, chat_template, gen_kwargs, include_path)
    check_suite_choice(suite, tasks)
    run_opts = run_options(seed=seed, dtype=dtype, device=device, backend=backend, no_cache=no_cache,
                           vllm_args=_kwargs(vllm_args, "--vllm-args"), endpoint_model=endpoint_model,
                           endpoint_key_env=endpoint_key_env, endpoint_args=_kwargs(endpoint_args, "--endpoint-args"))
    for path, what in report_files:
        if path is not None:
            check_new_file(Path(path), what)
    if (checkpoint is None) == (outputs is None):
        raise BadInput("wb eval: give a CHECKPOINT to evaluate, or --outputs FILE.jsonl (recorded answers), "
                       "not both")
    if outputs is not None and not suite:
        raise BadInput("--outputs scores recorded answers on a suite's tasks: give --suite")
    # --outputs: every item's answer is checked against the whole suite, then --limit applies
    loaded, specs = load_request(suite, tasks, overrides, evals_dir=evals_dir,
                                 limit=None if outputs is not None else limit, no_harness=no_harness,
                                 data_dir=data_dir)
    recorded = source = None
    if outputs is not None:
        from workbench.eval.outputs import limited, load_outputs, outputs_source

        if specs:
            raise BadInput(f"--outputs: suite '{loaded.config.name}' has lm-eval (harness) tasks, which need a "
                           "model: add --no-harness")
        recorded = load_outputs(Path(outputs), loaded, limit)
        source = outputs_source(Path(outputs))
        loaded = limited(loaded, limit)
    gate_specs = load_gates(Path(gates)) if gates else loaded.config.gates
    if not gate_specs and any(path is not None for path, _ in report_files):
        raise BadInput("--junit, --markdown and --gate-json report on gates: the suite has none and no --gates given")
    # the store's human labels only: refused before the checkpoint is even resolved
    judge_policy = judge_gate_policy(gate_specs, loaded.config, Store.open(store, writing=False),
                                     allow_uncalibrated=allow_uncalibrated_judge)
    mirror = resolve_data_dir(data_dir)
    # The checkpoint's files before lm-eval's tasks: building those reads their data, which `datasets` caches.
    runtime_options = RuntimeOptions.from_run_options(run_opts)
    ckpt = resolve_for_eval(checkpoint, base, runtime_options) if checkpoint is not None else None
    runtime = check_runtime(ckpt, runtime_options) if ckpt is not None else None  # task generations run on it too
    chosen = template_record = None
    if ckpt is not None:
        chosen, template_record = choose_eval_template(ckpt, template, needed=needs_template(loaded, specs))
        check_tools_rendered(chosen.text if chosen else None, ckpt.name, loaded)
    elif template is not None:
        raise BadInput("--chat-template prompts a checkpoint; --outputs scores recorded answers")
    prepared = [prepare_harness(spec, mirror) for spec in specs]  # builds lm-eval's tasks: bad names/data fail here
    for tasks_built in prepared:
        runtime.check_tasks(tasks_built.output_types())
    st = Store.open(store)
    base_run, base_ckpt = _resolve_baseline(st, baseline, runtime_options) if baseline else (None, None)
    base_template = None
    if base_ckpt is not None and base_ckpt.format != "endpoint":
        if chosen is not None and (template is not None or ckpt.kind == "adapter"):
            base_template = use_for_baseline(base_ckpt, chosen, template_record["source"])
        else:
            base_template = choose_eval_template(base_ckpt, None, needed=needs_template(loaded, specs),
                                                 what="--baseline")[1]
    check_gates(gate_specs, loaded.config, base_run, lm_eval_tasks=set().union(*(p.task_names() for p in prepared)),
                metrics=loaded.metric_names(), tags=loaded.tags())
    if loaded.uses_judge:
        from workbench.judge.session import check_judge

        check_judge(loaded.config.judge)
        from workbench.benchmarks.alpaca_eval import check_suite

        check_suite(loaded.config, base_run, baseline is not None, mirror)
    return EvalRequest(ckpt, loaded, specs, prepared, gate_specs, mirror, run_opts, st, limit, command,
                       base_run, base_ckpt, judge_policy, recorded, source, template_record, base_template)


def resolve_for_eval(ref: str, base: str | None, options: RuntimeOptions) -> Checkpoint:
    """A checkpoint reference for an eval: a runtime's own (an endpoint's URL), or one on disk or the hub, its
    files checked (with --base, checked to fit that base)."""
    from workbench.runtimes import claimed_reference

    runtime = claimed_reference(str(ref))
    if runtime is None and options.endpoint_model:
        raise BadInput(f"--endpoint-model names the model an endpoint URL serves; '{ref}' is not a URL "
                       "(http://HOST:PORT/v1)")
    if runtime is not None:
        if base:
            raise BadInput(f"--base puts an adapter on a base model; '{ref}' is a served {runtime.label}")
        return runtime.resolve(str(ref), options)
    from workbench.checkpoints.resolve import resolve_checked

    return resolve_checked(ref, base)


def evaluate(checkpoint: str | None, suite: str | None = None, *, tasks: str | list[str] | None = None,
             baseline: str | None = None, gates: str | Path | None = None, junit: str | Path | None = None,
             markdown: str | Path | None = None, gate_json: str | Path | None = None, mlflow: str | None = None,
             mlflow_experiment: str | None = None, html: str | Path | None = None, progress: bool = True,
             **options) -> EvalResult:
    """Evaluate `checkpoint` ('default', a model or adapter folder, a .gguf file, a hub id, or an endpoint URL with
    endpoint_model=) on a suite or lm-eval `tasks`, into the store; with `baseline` (a run id, or a checkpoint
    evaluated first on the same suite) compared, and with gates (the suite's, or a gates file) gated and
    reported (`junit`, `markdown`, `gate_json` files); `html`: the HTML report of the run and its baseline, with the
    gates' results (workbench.report). `checkpoint=None, outputs="answers.jsonl"` scores recorded answers on
    the suite instead, loading no model (workbench.eval.outputs). The other options are `wb eval`'s (prepare_eval).
    A failed gate is `result.passed == False`; `wb eval` turns it into exit 1."""
    if html is not None:
        from workbench.report.render import check_report

        check_report(Path(html), "--html")
    report_files = ((junit, "--junit"), (markdown, "--markdown"), (gate_json, "--gate-json"))
    request = prepare_eval(checkpoint, suite, tasks=tasks, baseline=baseline, gates=gates,
                           report_files=report_files, **options)
    tracking = _mlflow_target(mlflow, mlflow_experiment)
    if request.baseline_checkpoint is not None:
        from workbench.checkpoints.checks import record_checks

        record_checks(request.baseline_checkpoint)
    base_run = request.baseline_run
    if request.baseline_checkpoint is not None:
        base = request.baseline_checkpoint
        info(f"evaluating baseline {base.name} ({base.kind}, {base.format}) on suite {request.suite.config.name}")
        base_run = _run(request, base, request.plans(prepared=False), None, progress, request.baseline_template)
    ckpt = request.checkpoint
    if ckpt is None:
        info(f"scoring the answers recorded in {request.outputs['file']['path']} on suite "
             f"{request.suite.config.name}")
    else:
        info(f"evaluating {ckpt.name} ({ckpt.kind}, {ckpt.format}) on suite {request.suite.config.name}")
    run = _run(request, ckpt, request.plans(), base_run, progress, request.template)
    if request.judge_policy:
        request.store.annotate(run, "judge_gate_policy", request.judge_policy)
    from workbench.judge.reliability import summary_lines

    for line in summary_lines(run.manifest.get("judge")):
        err.print(line, soft_wrap=True, markup=False)
    if tracking:
        for logged in ([base_run] if request.baseline_checkpoint is not None else []) + [run]:
            _log_to_mlflow(request.store, logged, *tracking)
    result = EvalResult(run=run, store=request.store, baseline=base_run)
    if base_run is not None:
        from workbench.compare.runs import compare_runs

        result.comparison = compare_runs(base_run, run)
    if request.gates:
        from workbench.gate.reports import write_reports
        from workbench.gate.rules import evaluate_gates

        result.gate = evaluate_gates(run, base_run, request.gates)
        result.gate.judge_policy = request.judge_policy
        result.reports = write_reports(result.gate, junit=_path(junit), markdown=_path(markdown),
                                       json_path=_path(gate_json))
    if html is not None:
        from workbench.report.render import write_report

        # the run was made against this baseline whatever their settings; the differences show as warnings
        result.reports.append(write_report([r for r in (base_run, run) if r is not None], Path(html),
                                           gate=result.gate, allow_differences=True))
    return result


def _run(request: EvalRequest, ckpt: Checkpoint | None, plans: list[dict], baseline: Run | None,
         progress: bool, template: dict | None = None) -> Run:
    from workbench.eval.reuse import identity
    from workbench.system.progress import bars

    same = None if baseline is not None or ckpt is None else identity(
        ckpt, request.suite, limit=request.limit, run_options=request.run_options, plans=plans)
    options = EvalOptions(data_dir=request.mirror, limit=request.limit, command=request.command, baseline=baseline,
                          identity=same, chat_template=template)
    if ckpt is None:  # --outputs: the recorded answers, no model
        options.recorded, options.outputs = request.recorded, request.outputs
        with bars(enabled=progress) as bar:
            return run_suite(None, request.suite, request.store, options, progress=bar)
    with open_runtime(ckpt, request.runtime_options) as runtime, bars(enabled=progress) as bar, \
            library_stdout_to_stderr():
        return run_suite(runtime, request.suite, request.store, options, harness_plans=plans, progress=bar)


def _path(value) -> Path | None:
    return Path(value) if value is not None else None


def _kwargs(value: str | dict | None, option: str) -> dict | None:
    """key=value,... as the command line gives it, or a dict as the API does."""
    if value is None or isinstance(value, dict):
        return value
    return parse_kwargs(value, option)


def _resolve_baseline(st: Store, ref: str, options: RuntimeOptions) -> tuple[Run | None, Checkpoint | None]:
    """(run, None) for a run in the store, else (None, checkpoint) to evaluate on the same suite first."""
    from workbench.checkpoints.hub import parse_hub_id
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.runtimes import claimed_reference

    try:
        return st.resolve(ref), None
    except BadInput as not_a_run:
        if claimed_reference(ref) is not None:
            return None, resolve_for_eval(ref, None, options)
        if ref != "default" and not Path(ref).expanduser().exists() and parse_hub_id(ref) is None:
            raise BadInput(f"--baseline '{ref}': not a run ({not_a_run}), a checkpoint path or a hub id") from None
    return None, resolve_checkpoint(ref)


def _mlflow_target(value: str | None, experiment: str | None) -> tuple[str, str] | None:
    """(uri, experiment) for --mlflow, the server checked to answer before any model loads."""
    if value is None:
        return None
    from workbench.store.tracking import check_mlflow, mlflow_uri

    uri = mlflow_uri(value, os.environ.get("MLFLOW_TRACKING_URI"))
    check_mlflow(uri)
    return uri, experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "wb"


def _log_to_mlflow(st: Store, run: Run, uri: str, experiment: str) -> None:
    from workbench.store.tracking import log_eval_run
    from workbench.system.urls import public_url, redact_urls

    try:
        with library_stdout_to_stderr():  # MLflow prints a "View run" line; --json's stdout is one object
            where = log_eval_run(run, uri, experiment)
    except Exception as exc:  # noqa: BLE001  (the run is recorded; say so, whatever MLflow raised)
        from workbench.system.failures import first_line

        raise EnvironmentProblem(f"run {run.run_id} is recorded in {st.root}, but logging it to MLflow at "
                                 f"{public_url(uri)} failed: {redact_urls(first_line(exc))}") from None
    st.annotate(run, "mlflow", where)
    info(f"run {run.run_id} logged to MLflow {where['uri']} (experiment {experiment}, run {where['run_id']})")
