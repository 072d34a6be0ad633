"""`wb replay`: logged conversations answered again by a candidate (and a baseline, or the logged answers), compared
by the pairwise judge in both orders and by the deterministic checks (workbench.replay.checks), into a run of kind
`replay` in the store.

    result = workbench.replay.run.replay(["prod.jsonl"], candidate="out/adapter", baseline="default")
    result.run.metrics, result.sequential, result.gate

Everything given is checked before a model loads or the store is touched (`prepare_replay`): the options, the
gates, the suite and judge, both checkpoints, then the logs (workbench.replay.ingest). The conversations are then
answered and judged in batches, in an order drawn with the seed; after each batch the sequential test
(workbench.replay.sequential) may stop the replay once the answer is clear.
"""

import json
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from workbench.config import GateSpec, GenerationSpec, JudgeSpec, ScorerSpec, Strict, load_yaml_model
from workbench.errors import BadInput
from workbench.replay.checks import CHECKS, LOWER_IS_BETTER, answer_text, check_answer
from workbench.replay.conversations import Conversation
from workbench.replay.sequential import ALPHA, POINTS, SequentialTest, win_rate
from workbench.replay.shards import local_answers
from workbench.runtimes.base import RuntimeOptions
from workbench.store import Run, Store

TASK = "replay"
DEFAULT_RUBRIC = ("Which answer better serves the user's last request in this conversation: correct, helpful and "
                  "complete, following the user's and the system's instructions and the format the conversation "
                  "asks for (JSON, or a call of one of the offered tools, when it asks for one), and not refusing a "
                  "reasonable request.")
"""The judge's criteria when --suite names no judge_pairwise scorer."""
SIDES = ("candidate", "baseline")


class JudgeFile(Strict):
    """A judge file (`wb replay --judge FILE.yaml`): where the pairwise judge runs, as a suite's `judge:`."""

    judge: JudgeSpec
    """The judge: an OpenAI-compatible endpoint (base_url, model, api_key_env) or a local GGUF (model)."""


@dataclass
class ReplayRequest:
    """A checked `wb replay`: everything the run needs, no model loaded yet."""

    conversations: list[Conversation]
    ingest: dict  # counts, bad lines, formats, strata (from ingest.Prepared), and what replay itself dropped
    candidate: object  # checkpoints.checkpoint.Checkpoint
    baseline: object | None  # None: --against-logged
    judge: JudgeSpec
    rubric: str
    rubric_source: str
    generation: GenerationSpec
    gates: list[GateSpec]
    store: Store
    runtime_options: dict[str, RuntimeOptions]  # per side
    batch: int
    alpha: float
    seed: int
    command: str
    logs: list[str] = field(default_factory=list)
    ray: object | None = None  # the joined cluster's `ray` module (--ray), else None: answered in this process
    ray_address: str | None = None
    workers: int | None = None


@dataclass
class ReplayResult:
    run: Run
    store: Store
    sequential: dict
    gate: object | None = None  # gate.rules.GateReport

    @property
    def passed(self) -> bool:
        return self.gate is None or self.gate.passed

    def to_dict(self) -> dict:
        payload = {"run_id": self.run.run_id, "metrics": self.run.metrics, "sequential": self.sequential,
                   "ingest": self.run.manifest["ingest"]["counts"]}
        if self.gate is not None:
            payload["gate"] = self.gate.to_dict()
        return payload


def metric_names() -> list[str]:
    """Every metric a replay run records under task `replay` (what its gates may name)."""
    return (["win_rate", "win_rate.ci_low", "win_rate.ci_high"]
            + [f"{side}.{check}" for side in SIDES for check in CHECKS])


def _check_gates(gates: list[GateSpec]) -> None:
    known = metric_names()
    for gate in gates:
        if gate.task != TASK:
            raise BadInput(f"gate '{gate.label}': a replay run's metrics are under task '{TASK}', not '{gate.task}'")
        if gate.metric not in known:
            raise BadInput(f"gate '{gate.label}': a replay run has no metric '{gate.metric}' (its metrics: "
                           f"{', '.join(known)})")
        if gate.max_drop is not None or gate.tag is not None:
            raise BadInput(f"gate '{gate.label}': a replay is its own pair: gate it with min_value / max_value (e.g. "
                           "win_rate.ci_high min_value 0.5: fail when the candidate is significantly worse)")


def _suite_settings(suite: str | None, evals_dir: str | None, data_dir) -> tuple:
    """(judge spec, rubric, where the rubric came from, generation settings) from --suite, else the defaults."""
    if suite is None:
        return JudgeSpec(), DEFAULT_RUBRIC, "default", GenerationSpec(max_new_tokens=256)
    from workbench.eval.suites import load_suite

    loaded = load_suite(suite, evals_dir=evals_dir, data_dir=data_dir, limit=1)
    for task in loaded.config.tasks:
        for scorer in task.scorers:
            if scorer.type == "judge_pairwise" and scorer.rubric:
                return loaded.config.judge, scorer.rubric, f"{loaded.config.name}/{task.name}/{scorer.label}", \
                    task.generation
    generation = loaded.config.tasks[0].generation if loaded.config.tasks else GenerationSpec(max_new_tokens=256)
    return loaded.config.judge, DEFAULT_RUBRIC, "default", generation


def _judge_spec(judge: str | JudgeSpec | dict | None, suite_judge: JudgeSpec) -> JudgeSpec:
    """--judge: a YAML file holding a `judge:` mapping (as a suite's), a mapping, or None (the suite's, else the
    local judge `{model: default}`)."""
    if judge is None:
        return suite_judge
    if isinstance(judge, JudgeSpec):
        return judge
    if isinstance(judge, dict):
        return JudgeSpec.model_validate(judge)
    return load_yaml_model(Path(judge), JudgeFile).judge


def prepare_replay(logs: list[str | Path] | None, candidate: str, *, baseline: str | None = None,
                   against_logged: bool = False, conversations: list[Conversation] | None = None,
                   suite: str | None = None, judge=None, sample: int | None = None, seed: int = 0,
                   fmt: str | None = None, gates: str | Path | None = None, batch: int = 32, alpha: float = ALPHA,
                   max_new_tokens: int | None = None, backend: str = "auto", endpoint_model: str | None = None,
                   endpoint_key_env: str | None = None, evals_dir: str | None = None, data_dir=None,
                   ray: str | None = None, workers: int | None = None,
                   store=None, command: str = "workbench.replay.run.replay") -> ReplayRequest:
    """Everything `replay` is given, checked, before a model loads or the store is touched. `conversations` (the
    API) replaces reading `logs`; `ray`: answer in shards on this Ray cluster (host:port, ray://host:port or auto),
    `workers` actors (default: one per node)."""
    from workbench.eval.pipeline import resolve_for_eval
    from workbench.judge.session import check_judge
    from workbench.runtimes import check_runtime, claimed_reference

    if (baseline is None) == (not against_logged):
        raise BadInput("wb replay: give --baseline CHECKPOINT or --against-logged (compare with the logged answers), "
                       "one of the two")
    if (logs is None or not logs) == (conversations is None):
        raise BadInput("wb replay: give the LOGS to replay (or, from Python, conversations=)")
    if batch < 1:
        raise BadInput(f"--batch {batch}: expected 1 or more")
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha {alpha}: expected a level between 0 and 1")
    if workers is not None and (ray is None or workers < 1):
        raise BadInput("--workers N (1 or more) is the number of Ray workers: give it with --ray ADDRESS")
    gate_specs = []
    if gates is not None:
        from workbench.gate.rules import load_gates

        gate_specs = load_gates(Path(gates))
        _check_gates(gate_specs)
    suite_judge, rubric, rubric_source, generation = _suite_settings(suite, evals_dir, data_dir)
    if max_new_tokens is not None:
        generation = generation.model_copy(update={"max_new_tokens": max_new_tokens})
    judge_spec = _judge_spec(judge, suite_judge)
    check_judge(judge_spec)
    options = {}
    for side, ref in (("candidate", candidate), ("baseline", baseline)):
        if ref is not None:  # the endpoint options are for a side given as a URL
            url = claimed_reference(str(ref)) is not None
            options[side] = RuntimeOptions(backend=backend, endpoint_model=endpoint_model if url else None,
                                           endpoint_key_env=endpoint_key_env if url else None)
    if endpoint_model and not any(claimed_reference(str(r)) for r in (candidate, baseline) if r is not None):
        raise BadInput(f"--endpoint-model names the model an endpoint URL serves; '{candidate}' is not a URL "
                       "(http://HOST:PORT/v1)")
    cand = resolve_for_eval(candidate, None, options["candidate"])
    check_runtime(cand, options["candidate"])
    base = None
    if baseline is not None:
        base = resolve_for_eval(baseline, None, options["baseline"])
        check_runtime(base, options["baseline"])
    st = Store.open(store)
    if conversations is None:
        from workbench.replay.ingest import lineage_training_rows, prepare

        prepared = prepare([Path(p) for p in logs], fmt=fmt, sample=sample, seed=seed,
                           training_rows=lineage_training_rows(cand))
        conversations = list(prepared.conversations)
        # as JSON holds them (the manifest): a reader's Counter or set of formats included
        ingest = json.loads(json.dumps({"counts": dict(prepared.counts), "bad": list(prepared.bad),
                                        "formats": prepared.formats, "strata": prepared.strata},
                                       default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v)))
    else:
        ingest = {"counts": {"conversations": len(conversations)}, "bad": [], "formats": None, "strata": None}
    if against_logged:
        answered = [c for c in conversations if answer_text(c.logged_answer).strip()]  # text or tool calls
        ingest["counts"]["no_logged_answer"] = len(conversations) - len(answered)
        conversations = answered
    if not conversations:
        raise BadInput(f"{', '.join(map(str, logs or [])) or 'conversations'}: no conversation to replay"
                       + (" (none has a logged answer to compare with)" if against_logged else ""))
    joined = None
    if ray is not None:
        from workbench.sweep.ray_cluster import connect

        joined = connect(ray)
    return ReplayRequest(conversations, ingest, cand, base, judge_spec, rubric, rubric_source, generation, gate_specs,
                         st, options, batch, alpha, seed, command, [str(p) for p in logs or []], joined, ray, workers)


def _prompt(conversation: Conversation) -> list[dict]:
    """The conversation's messages as a runtime renders them: text content, tool calls in the templates' form."""
    from workbench.toolcalls.calls import ToolCall

    out = []
    for m in conversation.messages:
        msg = {"role": m.get("role", "user"), "content": answer_text({"content": m.get("content")})}
        if m.get("tool_calls"):
            msg["tool_calls"] = [ToolCall.from_openai(c).to_template() for c in m["tool_calls"]]
        out.append(msg)
    return out


def _judge_view(messages: list[dict]) -> list[dict]:
    """Messages as the judge's prompt shows them: text only (a tool call as its JSON)."""
    return [{"role": m["role"], "content": answer_text(m)} for m in messages]


def _judge_pair(client, spec: ScorerSpec, job) -> dict:
    from workbench.judge.grading import combine_orders, pairwise_order

    messages, cand, base = job
    if cand.strip() == base.strip():  # as judge_pairwise: identical answers tie without asking
        return {"orders": [], "identical": True, "flipped": False, "verdict": "tie"}
    return combine_orders([pairwise_order(client, spec, messages, None, cand, base, first)
                           for first in ("run", "baseline")], None)


def replay(logs: list[str | Path] | None, candidate: str, *, progress: bool = True, **options) -> ReplayResult:
    """Replay `logs` (or `conversations=`) through `candidate` against `baseline=` or the logged answers
    (`against_logged=True`), into a `replay` run; the options are prepare_replay's. A failed gate is
    `result.passed == False` (`wb replay` exits 1)."""
    request = prepare_replay(logs, candidate, **options)
    return run_replay(request, progress=progress)


def run_replay(request: ReplayRequest, *, progress: bool = True) -> ReplayResult:
    import contextlib

    from workbench.judge.session import JudgeSession
    from workbench.runtimes import open_runtime
    from workbench.system.console import info, library_stdout_to_stderr
    from workbench.system.environment import hardware, versions
    from workbench.system.progress import bars

    order = list(request.conversations)
    random.Random(request.seed).shuffle(order)  # the sequential test looks at a random order of the log
    spec = ScorerSpec(type="judge_pairwise", rubric=request.rubric, use_reference=False)
    test = SequentialTest(alpha=request.alpha)
    manifest = {
        "command": request.command, "checkpoint": request.candidate.to_dict(),
        "baseline": request.baseline.to_dict() if request.baseline is not None else {"kind": "logged answers"},
        "suite": TASK, "logs": request.logs, "seed": request.seed, "limit": None,
        "replay": {"rubric": request.rubric, "rubric_source": request.rubric_source, "batch": request.batch,
                   "generation": request.generation.model_dump(), "against_logged": request.baseline is None},
        "ingest": request.ingest, "versions": versions(), "timings": {},
    }
    samples: list[dict] = []
    shards = [order[at: at + request.batch] for at in range(0, len(order), request.batch)]
    with contextlib.ExitStack() as stack:
        if request.ray is not None:
            from workbench.replay.shards import RayShards

            cluster = RayShards(request.ray, request, request.workers)
            stack.callback(cluster.close)
        run = stack.enter_context(request.store.open_run("replay", manifest))
        judge = stack.enter_context(JudgeSession(request.judge))
        bar = stack.enter_context(bars(enabled=progress))
        stack.enter_context(library_stdout_to_stderr())
        runtimes = []
        if request.ray is None:
            runtimes = [stack.enter_context(open_runtime(ckpt, request.runtime_options[side]))
                        for side, ckpt in zip(SIDES, (request.candidate, request.baseline)) if ckpt is not None]
            answers = local_answers(runtimes[0], runtimes[1] if len(runtimes) > 1 else None,
                                    [[(_prompt(c), c.tools) for c in shard] for shard in shards], request.generation)
            run.manifest["executor"] = {"local": True}
        else:
            answers = cluster.answers([[(_prompt(c), c.tools) for c in shard] for shard in shards])
            run.manifest["executor"] = {"ray": request.ray_address, **cluster.describe()}
        started = time.monotonic()
        advance = bar.task("replay: answering and judging", total=len(order)) if bar else None
        for shard, (cand, base) in zip(shards, answers):
            logged = base is None
            if logged:
                base = [answer_text(c.logged_answer) for c in shard]
            jobs = [(_judge_view(_prompt(c)), a, b) for c, a, b in zip(shard, cand, base)]
            records = judge.client.map(partial(_judge_pair, judge.client, spec), jobs)
            for conv, a, b, rec in zip(shard, cand, base, records):
                samples.append(_sample(conv, a, b, rec, logged_side=logged))
            test.update([r["verdict"] for r in records if "verdict" in r])
            if advance:
                advance(len(shard))
            if test.decided:
                answers.close()  # the shards not yet answered are cancelled
                break
        run.manifest["timings"]["replay"] = round(time.monotonic() - started, 2)
        sequential = {**test.to_dict(), "n_judged": len(samples), "n_total": len(order),
                      "stopped_early": len(samples) < len(order)}
        run.manifest["sequential"] = sequential
        run.manifest["judge"] = judge.summary()
        run.manifest["hardware"] = hardware()
        for side, runtime in zip(("runtime", "baseline_runtime"), runtimes):
            run.manifest[side] = runtime.describe()
        run.write_samples(TASK, samples)
        _add_metrics(run, samples)
    info(f"replay: {len(samples)} of {len(order)} conversations judged; sequential test: {test.decision}")
    result = ReplayResult(run=run, store=request.store, sequential=sequential)
    if request.gates:
        from workbench.gate.rules import evaluate_gates

        result.gate = evaluate_gates(run, None, request.gates)
    return result


def _sample(conv: Conversation, cand: str, base: str, rec: dict, *, logged_side: bool) -> dict:
    """A run's record of one conversation: the logged id, the (scrubbed) messages, both answers, the verdict and
    the checks of each side."""
    checks = {"candidate": check_answer(cand, logged=conv.logged_answer, tools=conv.tools),
              "baseline": check_answer(conv.logged_answer if logged_side else base, logged=conv.logged_answer,
                                       tools=conv.tools)}
    scores = {"win_rate": POINTS[rec["verdict"]] if "verdict" in rec else None}
    for side, values in checks.items():
        scores.update({f"{side}.{k}": v for k, v in values.items() if v is not None})
    return {"id": conv.id, "source": conv.source, "model": conv.model, "messages": conv.messages,
            "tools": conv.tools, "output": cand, "baseline_output": base, "baseline_is_logged": logged_side,
            "judge": {"replay": rec}, "verdict": rec.get("verdict"), "checks": checks, "scores": scores,
            "reference": None}


def _add_metrics(run: Run, samples: list[dict]) -> None:
    from workbench.eval.runner import mean_stderr

    verdicts = [s["verdict"] for s in samples if s["verdict"] is not None]
    rate = win_rate(verdicts)
    errors = len(samples) - len(verdicts)
    counts = {k: rate[k] for k in ("wins", "ties", "losses")}
    run.add_metric(TASK, "win_rate", rate["value"], n=rate["n"], higher_is_better=True, source="judge",
                   ci_low=rate["ci_low"], ci_high=rate["ci_high"], errors=errors, **counts)
    run.add_metric(TASK, "win_rate.ci_low", rate["ci_low"], n=rate["n"], higher_is_better=True, source="judge")
    run.add_metric(TASK, "win_rate.ci_high", rate["ci_high"], n=rate["n"], higher_is_better=True, source="judge")
    for side in SIDES:
        for check in CHECKS:
            values = [s["checks"][side][check] for s in samples if s["checks"][side][check] is not None]
            value, stderr = mean_stderr(values) if values else (None, None)
            hib = None if check == "length_chars" else check not in LOWER_IS_BETTER
            run.add_metric(TASK, f"{side}.{check}", value, stderr=stderr, n=len(values), higher_is_better=hib,
                           source="check")
