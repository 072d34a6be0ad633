"""A judge earns its gate: a gate on a judge scorer's metric holds only once people agree with the judge.

Before any model loads, each gate on a metric of a judge scorer (judge, judge_pairwise, mt_bench, alpaca_eval) is
checked against the human labels in the store for that suite task (review.stats.judge_calibration): it needs at
least `min_labels` current labels of the scorer's kind (rubric grades for judge and mt_bench, pairwise verdicts for
judge_pairwise and alpaca_eval) and the lower bound of the 95% bootstrap CI of the judge's Cohen's kappa against
their majority at least `min_kappa`. Otherwise the eval is refused (BadInput), unless the user allows an
uncalibrated judge, which the run's manifest and the gate reports then record.
"""

from workbench.config import GateSpec, SuiteConfig
from workbench.errors import BadInput
from workbench.store.runs import Store

MIN_LABELS = 50
MIN_KAPPA = 0.6
KIND = {"judge": "rubric", "mt_bench": "rubric", "judge_pairwise": "pairwise", "alpaca_eval": "pairwise"}


def judge_scorer(gate: GateSpec, suite: SuiteConfig):
    """The judge scorer of the suite whose metric the gate reads (its label, or a metric it reports as
    LABEL.NAME), else None."""
    for task in suite.tasks:
        if task.name != gate.task:
            continue
        for spec in task.scorers:
            if spec.type in KIND and (gate.metric == spec.label or gate.metric.startswith(spec.label + ".")):
                return spec
    return None


def judge_gate_policy(gates: list[GateSpec], suite: SuiteConfig, store: Store, *, allow_uncalibrated: bool = False
                      ) -> list[dict]:
    """One record per judge gate: its labels, kappa and CI against the thresholds, and whether it is calibrated.
    Raises BadInput naming the first uncalibrated gate unless `allow_uncalibrated`."""
    from workbench.review.stats import judge_calibration

    records = []
    for gate in gates:
        spec = judge_scorer(gate, suite)
        if spec is None:
            continue
        need_labels = gate.min_labels if gate.min_labels is not None else MIN_LABELS
        need_kappa = gate.min_kappa if gate.min_kappa is not None else MIN_KAPPA
        cal = judge_calibration(store, suite.name, gate.task, spec.label, KIND[spec.type])
        low = cal["ci"][0]
        missing = []
        if cal["labels"] < need_labels:
            missing.append(f"{cal['labels']} of {need_labels} human {KIND[spec.type]} labels "
                           f"({need_labels - cal['labels']} missing)")
        if low is None or low < need_kappa:
            shown = "none (too few labelled items with judge verdicts)" if low is None else f"{low:.2f}"
            missing.append(f"judge-human kappa CI lower bound {shown}, below min_kappa {need_kappa:g}")
        records.append({"gate": gate.label, "task": gate.task, "scorer": spec.label, "kind": KIND[spec.type],
                        "labels": cal["labels"], "min_labels": need_labels, "kappa": cal["kappa"],
                        "kappa_ci": cal["ci"], "min_kappa": need_kappa, "items": cal["items"],
                        "calibrated": not missing, "missing": missing, "allowed_uncalibrated": bool(missing)})
    refused = [r for r in records if not r["calibrated"]]
    if refused and not allow_uncalibrated:
        r = refused[0]
        raise BadInput(f"gate '{r['gate']}': the judge ({r['scorer']}) has not earned its gate on task "
                       f"'{r['task']}' of suite '{suite.name}': {'; '.join(r['missing'])} (label answers with "
                       "the dashboard's Review page, see docs/review.md; or wb eval --allow-uncalibrated-judge)")
    return records
