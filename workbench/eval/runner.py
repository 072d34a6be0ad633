"""`wb eval`: run a suite's task evals (and its lm-eval regression slice) on a checkpoint, into the store."""

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.config import JUDGE_SCORERS
from workbench.errors import BadInput
from workbench.eval import breakdown
from workbench.eval.scorers import TOOL_CALL_METRICS, BadReturn, Sample, python_values, score, tool_call_values
from workbench.eval.suites import LoadedSuite, task_messages
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
    recorded: dict | None = None  # `wb eval --outputs`: task -> item id -> answers per turn (eval.outputs)
    outputs: dict | None = None  # with `recorded`: {"file": {path, sha256}, "checkpoint": what the manifest names}
    chat_template: dict | None = None  # the template's record (workbench.eval.templates): sha256, source, trained


def mean_stderr(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def run_suite(runtime: Runtime | None, suite: LoadedSuite, store: Store, options: EvalOptions, *,
              harness_plans: list[dict] = (), progress=None) -> Run:
    """The suite's task generations and its lm-eval tasks, all on `runtime` (the checkpoint loads once), into a
    new run. Inputs are validated by the caller (load_suite, harness_plan, check_runtime) before this opens it.
    `runtime` is None when the answers are recorded ones (`options.recorded`, `options.outputs`): no model."""
    ckpt = runtime.checkpoint if runtime is not None else None
    manifest = {
        "command": options.command,
        "checkpoint": ckpt.to_dict() if ckpt is not None else options.outputs["checkpoint"],
        **({"outputs": options.outputs["file"]} if ckpt is None else {}),
        "suite": suite.config.name,
        "suite_path": str(suite.path),
        "suite_sha": suite.sha,
        "config": suite.config.model_dump(),
        "limit": options.limit,
        "seed": 0,
        "chat_template_sha": runtime.chat_template_sha() if runtime is not None else None,
        **({"chat_template": options.chat_template} if options.chat_template else {}),
        "versions": versions(),
        "timings": {},
        **({"lineage": options.lineage} if options.lineage else {}),
        **({"sweep": options.sweep} if options.sweep else {}),
        **({"identity": options.identity} if options.identity else {}),
    }
    from workbench.checkpoints.quantization import quantization_of

    # task generations ran on the base quantized as in training (workbench.runtimes.hf)
    if ckpt is not None and quantization_of(ckpt):
        manifest["base_quantization"] = quantization_of(ckpt)
    with store.open_run("eval", manifest) as run, _judge_session(suite) as judge:
        if judge is not None:
            run.manifest["judge"] = {"tasks": {}}
        for task in suite.config.tasks:
            started = time.monotonic()
            _run_task(runtime, task, suite.items[task.name], run, progress, judge=judge, suite=suite,
                      options=options)
            run.manifest["timings"][task.name] = round(time.monotonic() - started, 2)
        if ckpt is not None and "chat_format" in ckpt.derived:  # what the task generations stopped at
            run.manifest["chat_format"] = ckpt.derived["chat_format"].as_dict()
        if judge is not None:
            run.manifest["judge"].update(judge.summary())
        for i, plan in enumerate(harness_plans):
            started = time.monotonic()
            _run_harness(runtime, plan, run)
            run.manifest["timings"][f"harness[{i}]"] = round(time.monotonic() - started, 2)
        run.manifest["hardware"] = hardware()
        if runtime is not None:
            run.manifest["runtime"] = runtime.describe()
    return run


def check_tools_rendered(template: str | None, name: str, suite: LoadedSuite) -> None:
    """Items with `tools` need a chat template that writes them (checked before a run opens): a template that
    renders the same prompt without them would score a model that never saw its functions. `template`: the one
    the checkpoint `name` is prompted with (None: not known here, as for an endpoint, which applies its own)."""
    from workbench.chat.template import ChatTemplateError, render_template
    from workbench.toolcalls.rows import renders_tools

    for task in suite.config.tasks if template else []:
        item = next((it for it in suite.items[task.name] if it.get("tools")), None)
        if item is None or not task.generation.chat_template:
            continue
        try:
            written = renders_tools(lambda m, t: render_template(template, m, True, tools=t), item["messages"],
                                    item["tools"])
        except ChatTemplateError:
            continue  # a template that cannot render the item: generation names the problem
        if not written:
            raise BadInput(f"{suite.path}: task '{task.name}', item '{item['id']}': tools: the chat template of "
                           f"{name} renders the same prompt without them (evaluate a checkpoint "
                           "whose template renders tools, e.g. one trained with `chat_template: qwen3`)")


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
    conversations = [task_messages(task, it["messages"]) for it in items]
    gen = task.generation
    recorded = options.recorded.get(task.name) if options and options.recorded else None
    turns = None
    if any(it.get("followups") for it in items):  # multi-turn items (n is 1: TaskSpec checks)
        turns = _answer_turns(runtime, gen, items, conversations, recorded, progress, task.name)
        answers = [[t[-1]] for t in turns]
    elif recorded is not None:
        answers = [[recorded[it["id"]][0]] for it in items]
    else:
        advance = progress.task(f"{task.name}: generating", total=len(items) * gen.n) if progress else None
        answers = [[] for _ in items]
        for i in range(gen.n):  # n answers per item: n passes, each with its own sampling seed
            spec = gen if gen.n == 1 else gen.model_copy(update={"seed": gen.seed + i})
            for kept, output in zip(answers, _generate(runtime, spec, items, conversations, advance)):
                kept.append(output)
    answers, thoughts = _final_answers(runtime, answers)
    plain = [s for s in task.scorers if s.type not in JUDGE_SCORERS]
    settings = task.model_dump()
    errors = {s.label: 0 for s in plain if s.type == "python"}
    known = suite.python_metrics.get(task.name, {}) if suite is not None else {}
    names = {label: found for label, found in known.items() if found}  # python scorers' names from load_suite
    # tool_call scorers read calls in the template's syntax (recorded answers: the text's own markers)
    syntax = runtime.chat_format().tool_syntax if runtime is not None and any(
        s.type == "tool_call" for s in plain) else ""
    samples = []
    for item, conversation, outputs in zip(items, conversations, answers):
        scored = [_score_answer(plain, item, conversation, output, settings, names, errors, syntax)
                  for output in outputs]
        sample = {"id": item["id"], "messages": conversation, "output": outputs[0], "reference": item["reference"],
                  "scores": _item_scores(scored, task.pass_at), "tags": item["tags"], "metadata": item["metadata"]}
        if thoughts is not None:
            sample.update(thoughts[len(samples)])
        if turns is not None:
            sample["turns"] = turns[len(samples)]
        if len(outputs) > 1:
            sample["outputs"] = outputs
            sample["answers"] = [{k: v for k, v in a.items() if v} for a in scored]
        else:
            sample.update({k: v for k, v in scored[0].items() if k != "scores" and v})
        samples.append(sample)
    if judge is not None and len(plain) < len(task.scorers):
        started = time.monotonic()
        record_judge_task(judge, task, samples, items, run, progress, gold=suite.gold.get(task.name),
                          baseline=options.baseline if options else None,
                          data_dir=options.data_dir if options else None)
        # the task's own entry is its whole time: generating (and scoring) is that minus this
        run.manifest["timings"][f"{task.name}.judge"] = round(time.monotonic() - started, 2)
    run.write_samples(task.name, samples)
    metrics = [(s.label, m) for s in plain for m in names.get(s.label, [s.label])]
    metrics += [(label, f"{m}.pass@{k}") for label, m in metrics for k in task.pass_at]
    groups = breakdown.groups(samples, task.breakdown)
    # a tool_call scorer's failure rates (unparseable, wrong, no_call) are better lower
    lower = {s.label + m for s in plain if s.type == "tool_call" for m in TOOL_CALL_METRICS[1:]}
    if thoughts is not None:
        for metric, better in (("reasoning_chars", None), ("reasoning_unclosed", False)):
            value, stderr = mean_stderr([float(t[metric]) for t in thoughts])
            run.add_metric(task.name, metric, value, stderr=stderr, n=len(thoughts), higher_is_better=better,
                           source="task")
    for label, metric in metrics:
        extra = {"errors": errors[label]} if label in errors else {}
        extra["higher_is_better"] = metric not in lower
        _add_mean(run, task.name, metric, samples, None, extra)
        for key, value in groups:
            _add_mean(run, task.name, breakdown.metric_name(metric, key, value), samples,
                      {"key": key, "value": value}, extra)


def _final_answers(runtime: Runtime | None, answers: list[list[str]]) -> tuple[list[list[str]], list[dict] | None]:
    """A reasoning model's answers with their thinking stripped (ChatFormat.strip_reasoning: what scorers and
    judges see; an answer whose thinking never closes is ""), and per item the first answer's thinking: its
    length in characters, whether it never closed, and the whole generated text. (answers, None) for a model
    that does not reason."""
    chat_format = runtime.chat_format() if runtime is not None else None
    if chat_format is None or not chat_format.reasoning_markers():
        return answers, None
    finals, thoughts = [], []
    for outputs in answers:
        stripped = [chat_format.strip_reasoning(o) for o in outputs]
        finals.append([answer for answer, _ in stripped])
        answer, chars = stripped[0]
        thoughts.append({"reasoning_chars": chars, "reasoning_unclosed": bool(chars) and answer == "",
                         "generated": outputs[0]})
    return finals, thoughts


def _generate(runtime: Runtime, gen, items: list[dict], conversations: list[list[dict]], progress) -> list[str]:
    """One answer per conversation, in order. An item's own generation settings (a benchmark's, e.g. MT-Bench's
    per-category temperature) apply where the task's `generation` does not set that field; items with the same
    settings are generated as one batch."""
    batches: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        own = {k: v for k, v in (item.get("generation") or {}).items() if k not in gen.model_fields_set}
        batches.setdefault(json.dumps(own, sort_keys=True), []).append(i)
    outputs: list[str] = [""] * len(items)
    for own, indices in batches.items():
        spec = gen.model_copy(update=json.loads(own))
        tools = [items[i].get("tools") for i in indices]
        extra = {"tools": tools} if any(tools) else {}  # tools go to the template or the request (Runtime.generate)
        for i, output in zip(indices, runtime.generate([conversations[i] for i in indices], spec, progress=progress,
                                                       **extra)):
            outputs[i] = output
    return outputs


def _answer_turns(runtime: Runtime | None, gen, items: list[dict], conversations: list[list[dict]],
                  recorded: dict | None, progress, task: str) -> list[list[str]]:
    """Each item's answer per turn: turn 1 for every item, then each follow-up (`followups`) on the conversation
    that holds the item's own earlier answers; `conversations` grow in place to the last turn's. With `recorded`
    outputs (id -> answers per turn) nothing is generated: the recorded answers fill the conversations."""
    total = sum(1 + len(it.get("followups") or []) for it in items)
    advance = progress.task(f"{task}: generating", total=total) if progress and recorded is None else None
    if recorded is not None:
        answers = [[recorded[it["id"]][0]] for it in items]
    else:
        answers = [[output] for output in _generate(runtime, gen, items, conversations, advance)]
    for turn in range(1, max(len(it.get("followups") or []) for it in items) + 1):
        indices = [i for i, it in enumerate(items) if len(it.get("followups") or []) >= turn]
        for i in indices:
            conversations[i] += [{"role": "assistant", "content": answers[i][-1]},
                                 {"role": "user", "content": items[i]["followups"][turn - 1]}]
        if recorded is not None:
            outputs = [recorded[items[i]["id"]][turn] for i in indices]
        else:
            outputs = _generate(runtime, gen, [items[i] for i in indices], [conversations[i] for i in indices],
                                advance)
        for i, output in zip(indices, outputs):
            answers[i].append(output)
    return answers


def _score_answer(plain, item: dict, conversation: list[dict], output: str, settings: dict, names: dict,
                  errors: dict, tool_syntax: str = "") -> dict:
    """One answer's scores by every non-judge scorer; a python scorer's exception or bad return value is recorded
    (errors, by scorer label) instead of a score. `names` collects each scorer's metric names."""
    scores, explanations, failed = {}, {}, {}
    for spec in plain:
        if spec.type == "tool_call":
            result = tool_call_values(spec, item, output, tool_syntax)
            names.setdefault(spec.label, [spec.label + m for m in TOOL_CALL_METRICS])
            scores.update(result.values)
            explanations[spec.label] = result.explanation
            continue
        if spec.type != "python":
            scores[spec.label] = score(spec, output, item["reference"])
            names.setdefault(spec.label, [spec.label])
            continue
        sample = Sample(id=item["id"], messages=conversation, output=output, reference=item["reference"],
                        metadata=item["metadata"], tags=item["tags"], task=settings)
        try:
            result = python_values(spec, sample)
            expected = names.setdefault(spec.label, list(result.values))
            if list(result.values) != expected:
                raise BadReturn(f"returned the values {', '.join(result.values)}; earlier samples gave "
                                f"{', '.join(expected)}")
        except Exception as exc:  # noqa: BLE001  (the user's code: recorded on the sample and counted)
            failed[spec.label] = f"{type(exc).__name__}: {exc}"
            errors[spec.label] += 1
            continue
        scores.update(result.values)
        if result.explanation is not None:
            explanations[spec.label] = result.explanation
    return {"output": output, "scores": scores, "explanations": explanations, "errors": failed}


def _item_scores(scored: list[dict], pass_at: list[int]) -> dict[str, float]:
    """An item's score per metric: the mean over its answers that have one; pass@k over all its answers (one that
    errored counts as failed)."""
    out = {}
    for metric in dict.fromkeys(m for a in scored for m in a["scores"]):
        values = [a["scores"][metric] for a in scored if metric in a["scores"]]
        out[metric] = sum(values) / len(values)
        correct = sum(a["scores"].get(metric) == 1.0 for a in scored)
        for k in pass_at:
            out[f"{metric}.pass@{k}"] = pass_at_k(len(scored), correct, k)
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"):
    1 - C(n-c, k) / C(n, k) for n answers of which c are correct, computed as their numerically stable product
    1 - prod_{i=n-c+1}^{n} (1 - k / i)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _add_mean(run: Run, task: str, metric: str, samples: list[dict], group: dict | None, extra: dict) -> None:
    values = list(breakdown.group_scores(samples, metric, group).values())
    value, stderr = mean_stderr(values) if values else (None, None)
    run.add_metric(task, metric, value, stderr=stderr, n=len(values), source="task",
                   **({"breakdown": group} if group else {}), **extra)


def record_judge_task(judge, task, samples: list[dict], items: list[dict], run: Run, progress, *,
                      gold: list[dict] | None, baseline: Run | None, data_dir: Path | None = None) -> None:
    """Judge scorers on `samples` (updated in place); their metrics, gold-set records and reliability into `run`."""
    from workbench.judge.grading import judge_task

    metrics, reliability, gold_records = judge_task(
        judge.client, task, samples, baseline_samples=baseline.samples(task.name) if baseline else None,
        baseline_run=baseline.run_id if baseline else None, gold=gold, items=items, progress=progress,
        data_dir=data_dir)
    for label, values, errors, extra in metrics:
        value, stderr = mean_stderr(values) if values else (None, None)
        if "value" in extra:  # computed by the benchmark's own code (alpaca-eval's win rates)
            value, stderr = extra.pop("value"), extra.pop("stderr")
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
