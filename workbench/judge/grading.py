"""Judge scorers on a task's samples: rubric grades, pairwise verdicts versus a baseline run (both orders), and
the judge's grades of a human-labelled gold set. Verdicts and rationales go into each sample's "judge" field;
a failed judge call is recorded there as an error and its score is None (never counted)."""

from functools import partial

from workbench.config import ScorerSpec, TaskSpec
from workbench.judge.client import JudgeClient, JudgeFailure
from workbench.judge.prompts import (
    PAIRWISE_SCHEMA,
    pairwise_messages,
    rubric_messages,
    rubric_schema,
)
from workbench.judge.reliability import (
    gold_agreement,
    pairwise_reliability,
    rubric_reliability,
)

PAIRWISE_POINTS = {"win": 1.0, "tie": 0.5, "loss": 0.0}
OTHER = {"run": "baseline", "baseline": "run"}


def rubric_grade(client: JudgeClient, spec: ScorerSpec, messages: list[dict], answer: str, reference) -> dict:
    ref = reference if spec.use_reference else None
    try:
        verdict = client.ask(rubric_messages(spec.rubric, spec.scale, messages, answer, ref), rubric_schema(spec.scale))
    except JudgeFailure as exc:
        return {"error": str(exc)}
    lo, hi = spec.scale
    return {"score": verdict["score"], "normalized": (verdict["score"] - lo) / (hi - lo),
            "rationale": verdict["rationale"]}


def pairwise_order(client: JudgeClient, spec: ScorerSpec, messages, reference, run_answer: str, base_answer: str,
                   first: str) -> dict:
    """One ordering: `first` ('run' or 'baseline') is shown as answer A. The winner is mapped back to run/baseline."""
    a, b = (run_answer, base_answer) if first == "run" else (base_answer, run_answer)
    ref = reference if spec.use_reference else None
    try:
        verdict = client.ask(pairwise_messages(spec.rubric, messages, a, b, ref), PAIRWISE_SCHEMA)
    except JudgeFailure as exc:
        return {"a": first, "error": str(exc)}
    winner = {"A": first, "B": OTHER[first], "tie": "tie"}[verdict["winner"]]
    return {"a": first, "said": verdict["winner"], "winner": winner, "rationale": verdict["rationale"]}


def _grade_sample(client, spec, sample):
    return rubric_grade(client, spec, sample["messages"], sample["output"], sample["reference"])


def _grade_gold(client, spec, items_by_id, row):
    item = items_by_id[row["id"]]
    return rubric_grade(client, spec, item["messages"], row["answer"], item["reference"])


def _judge_order(client, spec, base_by_id, job):
    sample, first = job
    return pairwise_order(client, spec, sample["messages"], sample["reference"], sample["output"],
                          base_by_id[sample["id"]]["output"], first)


def combine_orders(orders: list[dict], baseline_run: str | None) -> dict:
    """A verdict counts only when both orders agree; otherwise it is a tie (and a position flip)."""
    record = {"baseline_run": baseline_run, "orders": orders}
    errors = [o["error"] for o in orders if "error" in o]
    if errors:
        record["error"] = errors[0]
        return record
    first, second = (o["winner"] for o in orders)
    agreed = first if first == second else "tie"
    record.update(flipped=first != second, verdict={"run": "win", "baseline": "loss", "tie": "tie"}[agreed])
    return record


def judge_task(client: JudgeClient, task: TaskSpec, samples: list[dict], *, baseline_samples: list[dict] | None,
               baseline_run: str | None, gold: list[dict] | None, items: list[dict], progress=None,
               data_dir=None):
    """Adds judge scores/records to `samples` in place. Returns (metrics, reliability, gold_records):
    metrics as (label, values without errors, errors, extra) tuples for the runner to record (the mean of
    `values` is the metric). `data_dir`: the data mirror a benchmark's grading reads (its judge prompts)."""
    metrics, reliability, gold_records = [], {}, []
    by_id = {it["id"]: it for it in items}
    for spec in (s for s in task.scorers if s.type == "mt_bench"):
        from workbench.benchmarks.mt_bench import grade

        found, reliability[spec.label] = grade(client, spec.label, samples, items, data_dir, progress)
        metrics += found
    for spec in (s for s in task.scorers if s.type == "judge"):
        tick = progress.task(f"{task.name}: judge {spec.label}", total=len(samples)) if progress else None
        records = client.map(partial(_grade_sample, client, spec), samples, tick)
        for sample, rec in zip(samples, records):
            sample.setdefault("judge", {})[spec.label] = rec
            sample["scores"][spec.label] = rec.get("normalized")
        values = [r["normalized"] for r in records if "error" not in r]
        metrics.append((spec.label, values, len(records) - len(values), {"scale": list(spec.scale)}))
        rel = rubric_reliability(records, [s["output"] for s in samples])
        if gold:
            tick = progress.task(f"{task.name}: judge gold set", total=len(gold)) if progress else None
            graded = client.map(partial(_grade_gold, client, spec, by_id), gold, tick)
            lo, hi = spec.scale
            gold_records += [{"id": g["id"], "messages": by_id[g["id"]]["messages"], "output": g["answer"],
                              "reference": by_id[g["id"]]["reference"], "human_score": g["score"],
                              "scores": {"human": (g["score"] - lo) / (hi - lo), spec.label: rec.get("normalized")},
                              "judge": {spec.label: rec}} for g, rec in zip(gold, graded)]
            rel["gold"] = gold_agreement([r.get("score") for r in graded], [g["score"] for g in gold], spec.scale)
        reliability[spec.label] = rel
    for spec in (s for s in task.scorers if s.type == "judge_pairwise"):
        if baseline_samples is None:
            reliability[spec.label] = {"skipped": "pairwise grading needs a baseline run (--baseline)"}
            continue
        base = {b["id"]: b for b in baseline_samples}
        paired = [s for s in samples if s["id"] in base]
        # The same answer on both sides is a tie by definition: no judge call, and no position-flip evidence.
        differ = [s for s in paired if s["output"].strip() != base[s["id"]]["output"].strip()]
        jobs = [(s, first) for s in differ for first in ("run", "baseline")]
        tick = progress.task(f"{task.name}: judge {spec.label}", total=len(jobs)) if progress else None
        done = client.map(partial(_judge_order, client, spec, base), jobs, tick)
        orders = {s["id"]: done[2 * i: 2 * i + 2] for i, s in enumerate(differ)}
        records = []
        for sample in paired:
            if sample["id"] in orders:
                rec = combine_orders(orders[sample["id"]], baseline_run)
            else:
                rec = {"baseline_run": baseline_run, "orders": [], "identical": True, "flipped": False,
                       "verdict": "tie"}
            rec["baseline_output"] = base[sample["id"]]["output"]
            records.append(rec)
            sample.setdefault("judge", {})[spec.label] = rec
            sample["scores"][spec.label] = PAIRWISE_POINTS[rec["verdict"]] if "verdict" in rec else None
        values = [PAIRWISE_POINTS[r["verdict"]] for r in records if "verdict" in r]
        metrics.append((spec.label, values, len(records) - len(values),
                        {"baseline_run": baseline_run, "unpaired": len(samples) - len(paired)}))
        reliability[spec.label] = pairwise_reliability(records, [s["output"] for s in paired])
    return metrics, reliability, gold_records
