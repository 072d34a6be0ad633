"""`wb eval`: run a suite's task evals (and its lm-eval regression slice) on a checkpoint, into the store."""

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.config import JUDGE_SCORERS
from workbench.eval.scorers import score
from workbench.eval.suites import LoadedSuite
from workbench.runtimes.base import Runtime
from workbench.store import Run, Store
from workbench.system.environment import hardware, versions


@dataclass
class EvalOptions:
    data_dir: Path | None = None
    limit: int | None = None
    command: str = ""
    baseline: Run | None = None  # judge_pairwise scorers compare this run's answers with the baseline's
    lineage: dict | None = None  # an eval during training: {"train_run", "step"}
    sweep: dict | None = None  # a unit of `wb sweep`: {"unit", "where"}
    identity: dict | None = None  # what makes another run identical to this one (workbench.eval.reuse)


def mean_stderr(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def run_suite(runtime: Runtime, suite: LoadedSuite, store: Store, options: EvalOptions, *,
              harness_plans: list[dict] = (), progress=None) -> Run:
    """The suite's task generations and its lm-eval tasks, all on `runtime` (the checkpoint loads once), into a
    new run. Inputs are validated by the caller (load_suite, harness_plan, check_runtime) before this opens it."""
    ckpt = runtime.checkpoint
    manifest = {
        "command": options.command,
        "checkpoint": ckpt.to_dict(),
        "suite": suite.config.name,
        "suite_path": str(suite.path),
        "suite_sha": suite.sha,
        "config": suite.config.model_dump(),
        "limit": options.limit,
        "seed": 0,
        "chat_template_sha": runtime.chat_template_sha(),
        "versions": versions(),
        "timings": {},
        **({"lineage": options.lineage} if options.lineage else {}),
        **({"sweep": options.sweep} if options.sweep else {}),
        **({"identity": options.identity} if options.identity else {}),
    }
    from workbench.checkpoints.quantization import quantization_of

    if quantization_of(ckpt):  # task generations ran on the base quantized as in training (workbench.runtimes.hf)
        manifest["base_quantization"] = quantization_of(ckpt)
    with store.open_run("eval", manifest) as run, _judge_session(suite) as judge:
        if judge is not None:
            run.manifest["judge"] = {"tasks": {}}
        for task in suite.config.tasks:
            started = time.monotonic()
            _run_task(runtime, task, suite.items[task.name], run, progress, judge=judge, suite=suite,
                      options=options)
            run.manifest["timings"][task.name] = round(time.monotonic() - started, 2)
        if "chat_format" in ckpt.derived:  # what the task generations stopped at
            run.manifest["chat_format"] = ckpt.derived["chat_format"].as_dict()
        if judge is not None:
            run.manifest["judge"].update(judge.summary())
        for i, plan in enumerate(harness_plans):
            started = time.monotonic()
            _run_harness(runtime, plan, run)
            run.manifest["timings"][f"harness[{i}]"] = round(time.monotonic() - started, 2)
        run.manifest["hardware"] = hardware()
        run.manifest["runtime"] = runtime.describe()
    return run


def harness_plan(spec, mirror, limit, run_opts: dict, prepared=None) -> dict:
    """The keyword arguments of run_harness for one harness entry of a suite (the runtime brings the backend,
    dtype, device and engine arguments)."""
    plan = dict(tasks=spec.tasks, data_dir=mirror, limit=limit if limit is not None else spec.limit,
                num_fewshot=spec.num_fewshot, batch_size=spec.batch_size,
                apply_chat_template=spec.apply_chat_template, gen_kwargs=spec.gen_kwargs or None,
                include_path=Path(spec.include_path) if spec.include_path else None,
                seed=run_opts["seed"], use_cache=run_opts["use_cache"])
    if prepared is not None:
        plan["prepared"] = prepared
    return plan


def prepare_harness(spec, mirror):
    """lm-eval's tasks for a harness entry, built (and their data read) without a model."""
    from workbench.eval.harness import prepare_tasks

    return prepare_tasks(spec.tasks, data_dir=mirror,
                         include_path=Path(spec.include_path) if spec.include_path else None)


def harness_spec(spec, overrides: dict, suite_path: Path):
    """A suite's harness entry with command-line overrides, its include_path resolved against the suite."""
    update = dict(overrides)
    if "include_path" not in update and spec.include_path:  # a suite's own folder is relative to the suite
        update["include_path"] = str((suite_path.parent / spec.include_path).resolve())
    return spec.model_copy(update=update)


def _judge_session(suite: LoadedSuite):
    if not suite.uses_judge:
        return contextlib.nullcontext()
    from workbench.judge.session import JudgeSession

    return JudgeSession(suite.config.judge)


def _run_task(runtime: Runtime, task, items: list[dict], run: Run, progress, *, judge=None, suite=None,
              options: EvalOptions | None = None) -> None:
    advance = progress.task(f"{task.name}: generating", total=len(items)) if progress else None
    outputs = runtime.generate([it["messages"] for it in items], task.generation, progress=advance)
    samples = []
    plain = [s for s in task.scorers if s.type not in JUDGE_SCORERS]
    per_scorer: dict[str, list[float]] = {s.label: [] for s in plain}
    for item, output in zip(items, outputs):
        scores = {s.label: score(s, output, item["reference"]) for s in plain}
        for label, value in scores.items():
            per_scorer[label].append(value)
        samples.append({"id": item["id"], "messages": item["messages"], "output": output,
                        "reference": item["reference"], "scores": scores})
    if judge is not None and len(plain) < len(task.scorers):
        record_judge_task(judge, task, samples, items, run, progress, gold=suite.gold.get(task.name),
                          baseline=options.baseline if options else None)
    run.write_samples(task.name, samples)
    for label, values in per_scorer.items():
        value, stderr = mean_stderr(values)
        run.add_metric(task.name, label, value, stderr=stderr, n=len(values), higher_is_better=True, source="task")


def record_judge_task(judge, task, samples: list[dict], items: list[dict], run: Run, progress, *,
                      gold: list[dict] | None, baseline: Run | None) -> None:
    """Judge scorers on `samples` (updated in place); their metrics, gold-set records and reliability into `run`."""
    from workbench.judge.grading import judge_task

    metrics, reliability, gold_records = judge_task(
        judge.client, task, samples, baseline_samples=baseline.samples(task.name) if baseline else None,
        baseline_run=baseline.run_id if baseline else None, gold=gold, items=items, progress=progress)
    for label, values, errors, extra in metrics:
        value, stderr = mean_stderr(values) if values else (None, None)
        run.add_metric(task.name, label, value, stderr=stderr, n=len(values), higher_is_better=True,
                       source="judge", errors=errors, **extra)
    if gold_records:
        run.write_samples(f"{task.name}.judge-gold", gold_records)
    run.manifest["judge"]["tasks"][task.name] = reliability


def _run_harness(runtime: Runtime, plan, run: Run) -> None:
    from workbench.eval.harness import run_harness

    result = run_harness(runtime.checkpoint, **plan, runtime=runtime)
    for m in result.metrics:
        run.add_metric(m["task"], m["metric"] if not m.get("filter") or m["filter"] == "none"
                       else f"{m['metric']},{m['filter']}", m["value"], stderr=m.get("stderr"), n=m.get("n"),
                       higher_is_better=m.get("higher_is_better"), source="lm-eval")
    for task, rows in result.samples.items():
        run.write_samples(f"lm-eval.{task}", rows)
    run.manifest.setdefault("harness", []).append({"tasks": plan["tasks"], "settings": result.settings,
                                                   "sources": result.sources, "cache": result.cache})
