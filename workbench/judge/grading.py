"""Judge scorers on a task's samples: rubric grades, pairwise verdicts versus a baseline run (both orders), and
the judge's grades of a human-labelled gold set. Verdicts and rationales go into each sample's "judge" field;
a failed judge call is recorded there as an error and its score is None (never counted)."""

from functools import partial

from workbench.benchmarks import alpaca_eval
from workbench.config import ScorerSpec, TaskSpec
from workbench.eval import breakdown
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
    for spec in (s for s in task.scorers if s.type == "alpaca_eval"):
        if spec.against == "baseline" and baseline_samples is None:
            reliability[spec.label] = {"skipped": "against: baseline needs a baseline run (--baseline)"}
            continue
        found, rel = alpaca_eval_scores(client, spec, samples, baseline_samples, baseline_run, data_dir,
                                        progress.task(f"{task.name}: judge {spec.label}", total=len(samples))
                                        if progress else None, task.breakdown)
        metrics += found
        reliability[spec.label] = rel
    return metrics, reliability, gold_records


PREFERENCE = {"loss": 1.0, "tie": 1.5, "win": 2.0}  # AlpacaEval's: 1 the baseline is better, 2 the model


def _alpaca_pairwise(client, spec, pair):
    sample, base = pair
    if sample["output"].strip() == base.strip():  # as judge_pairwise: a tie without asking
        return {"orders": [], "identical": True, "flipped": False, "verdict": "tie"}
    # The baseline's answer is the item's reference here: it is shown as an answer, never as the standard.
    return combine_orders([pairwise_order(client, spec, sample["messages"], None, sample["output"], base, first)
                           for first in ("run", "baseline")], None)


def _alpaca_annotator(client, job):
    messages, switched = job
    try:
        reply = client.reply(messages, alpaca_eval.annotator_request())
    except JudgeFailure as exc:
        return {"error": str(exc)}
    preference = alpaca_eval.annotator_preference(reply["content"], reply["top_logprobs"], switched)
    if preference is None:
        return {"error": f"the annotator named no output: {reply['content'][:40]!r}", "said": reply["content"]}
    return {"said": reply["content"], "switched": switched, "logprobs": bool(reply["top_logprobs"]),
            "preference": preference}


def alpaca_eval_scores(client, spec, samples, baseline_samples, baseline_run, data_dir, tick, keys=()):
    """AlpacaEval preferences of `samples` against the reference (or baseline) answers, and alpaca-eval's win rate
    and length-controlled win rate of them (the win rate also per tag and `breakdown` key, e.g. AlpacaEval's
    `dataset`): (metrics, reliability)."""
    if spec.against == "baseline":
        base = {b["id"]: b["output"] for b in baseline_samples}
        baseline_name = baseline_run or "baseline"
    else:
        base = {s["id"]: s["reference"] for s in samples if isinstance(s["reference"], str)}
        baseline_name = alpaca_eval.REFERENCE
    paired = [s for s in samples if s["id"] in base]
    if spec.annotator == "alpaca_eval":
        jobs = alpaca_eval.annotator_prompts([{"instruction": s["messages"][-1]["content"], "output_1": base[s["id"]],
                                               "output_2": s["output"]} for s in paired])
        records = client.map(partial(_alpaca_annotator, client), jobs, tick)
    else:
        records = client.map(partial(_alpaca_pairwise, client, spec), [(s, base[s["id"]]) for s in paired], tick)
        for rec in records:
            if "verdict" in rec:
                rec["preference"] = PREFERENCE[rec["verdict"]]
    rows = []
    for sample, rec in zip(paired, records):
        rec.update(annotator=spec.annotator, against=spec.against, baseline=baseline_name,
                   baseline_output=base[sample["id"]])
        sample.setdefault("judge", {})[spec.label] = rec
        index = sample["metadata"].get("index", len(rows)) if isinstance(sample["metadata"], dict) else len(rows)
        rows.append({"index": index, "instruction": sample["messages"][-1]["content"], "output": sample["output"],
                     "baseline_output": base[sample["id"]], "preference": rec.get("preference")})
    annotations = alpaca_eval.annotation_rows(rows, "run", baseline_name)
    errors = len(samples) - len(annotations)
    reliability = {"baseline": baseline_name, "annotator": spec.annotator, "unpaired": len(samples) - len(paired)}
    if spec.annotator == "wb":
        reliability.update(pairwise_reliability(records, [s["output"] for s in paired]))
    else:
        reliability.update(kind="alpaca_eval", n=len(records), errors=sum("error" in r for r in records),
                           weighted=sum(r.get("logprobs", False) for r in records))
    if not annotations:
        return [], {**reliability, "skipped": "no verdicts"}
    result = alpaca_eval.win_rates(annotations, data_dir=data_dir, length_controlled=spec.length_controlled)
    glm = result.pop("glm_preference", None)
    win, lc = alpaca_eval.metric_names(spec.label)
    for sample, row in zip(paired, rows):
        has = row["preference"] is not None
        sample["scores"][win] = row["preference"] - 1 if has else None
        if glm is not None:
            sample["scores"][lc] = glm.get(row["index"]) if has else None
    extra = {"baseline": baseline_name, "alpaca_eval": result}
    metrics = [(win, [a["preference"] - 1 for a in annotations], errors,
                {**extra, "value": result["win_rate"] / 100, "stderr": _fraction(result["standard_error"])})]
    if glm is not None:
        metrics.append((lc, [glm[a["index"]] for a in annotations], errors,
                        {**extra, "value": result["length_controlled_winrate"] / 100,
                         "stderr": _fraction(result["lc_standard_error"])}))
    else:
        reliability["length_controlled_skipped"] = result["length_controlled_skipped"]
    for key, value in breakdown.groups(paired, list(keys)):
        judged = [smp for smp, row in zip(paired, rows) if row["preference"] is not None]  # as `annotations`
        group = [a for a, smp in zip(annotations, judged) if breakdown.in_group(smp, key, value)]
        if group:
            part = alpaca_eval.win_rates(group, data_dir=data_dir, length_controlled=False)
            metrics.append((breakdown.metric_name(win, key, value), [a["preference"] - 1 for a in group], 0,
                            {"breakdown": {"key": key, "value": value}, "value": part["win_rate"] / 100,
                             "stderr": _fraction(part["standard_error"])}))
    return metrics, reliability


def _fraction(percent):
    return None if percent is None else percent / 100
