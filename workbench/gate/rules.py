"""Release gates: rules on a run's metrics, alone or versus a baseline run, with paired significance tests.

Decision rules (docs/ci-gate.md explains them for users):

- ``min_value`` / ``max_value``: the run's reported value (a point estimate) must be >= min_value / <= max_value.
- ``max_drop``: fails only when BOTH
    1. the drop (baseline - run for higher-is-better metrics, over the samples both runs scored) exceeds max_drop, and
    2. the drop is statistically significant at ``significance`` (two-sided): McNemar's p < significance for
       pass/fail scores, or the percentile bootstrap CI of the paired mean difference lying wholly on the worse side
       of zero for continuous scores.
  A drop within the allowance passes however certain it is; a drop beyond it that the samples cannot tell apart
  from noise passes too, and the gate's power warning says when n is too small to see a drop of max_drop at all.
  Without per-sample scores the gate falls back to an unpaired normal test on the two runs' stderrs, and without
  those to the point estimate alone (with a warning).

Samples are paired by id; ids only one run scored are counted, reported and left out.
"""

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist, mean, stdev
from typing import Literal

from pydantic import Field

from workbench.config import JUDGE_SCORERS, GateSpec, Strict, SuiteConfig, load_yaml_model
from workbench.errors import BadInput
from workbench.eval.breakdown import sample_scores
from workbench.store import Run

EXACT_BELOW = 25  # McNemar: exact binomial below this many discordant pairs, chi-square (corrected) from here on
RESAMPLES = 10_000
SEED = 0
POWER = 0.8  # the power at which the gate asks to be able to see a drop of max_drop

Status = Literal["pass", "fail", "skip"]


class GatesFile(Strict):
    """A gates file: release gates kept apart from the suite."""

    gates: list[GateSpec]
    """The gates, each entry as a suite's `gates:` takes it."""
    min_labels: int | None = Field(None, ge=1)
    """The human labels a judge gate needs (docs/review.md), for every gate of the file that does not set its own
    (default 50)."""
    min_kappa: float | None = Field(None, ge=-1, le=1)
    """The lowest lower bound of the judge-human kappa CI a judge gate needs, for every gate of the file that does
    not set its own (default 0.6)."""


def load_gates(path: Path) -> list[GateSpec]:
    """A gates file: YAML with a top-level `gates:` list (the same entries a suite's `gates:` takes); the file's
    `min_labels` / `min_kappa` filled into the gates that leave them unset."""
    loaded = load_yaml_model(Path(path), GatesFile)
    shared = {key: getattr(loaded, key) for key in ("min_labels", "min_kappa") if getattr(loaded, key) is not None}
    return [g.model_copy(update={k: v for k, v in shared.items() if getattr(g, k) is None}) for g in loaded.gates]


def check_gates(gates: list[GateSpec], suite: SuiteConfig, baseline: Run | None = None, *,
                lm_eval_tasks: set[str] | None = None, metrics: dict[str, list[str] | None] | None = None,
                tags: dict[str, set[str]] | None = None) -> None:
    """Before any model loads: gates on the suite's own tasks must name one of that task's metrics (`metrics`, from
    LoadedSuite.metric_names; else its scorers' labels) and, with `tag`, a tag its items carry (`tags`), and a
    baseline run must have every metric a max_drop gate compares. Given the names the run's lm-eval tasks can
    report (lm_eval_tasks; an empty set when none run), a gate must name a suite task or one of those."""
    scorers = {t.name: [s.label for s in t.scorers] for t in suite.tasks}
    for task, names in (metrics or {}).items():
        if names is not None:
            scorers[task] = names + [s.label for t in suite.tasks if t.name == task for s in t.scorers
                                     if s.type in JUDGE_SCORERS]
        else:  # a python scorer's names are known only when it runs
            scorers.pop(task, None)
    for gate in gates:
        if gate.tag is not None and tags is not None and gate.task in tags and gate.tag not in tags[gate.task]:
            raise BadInput(f"gate '{gate.label}': tag: no item of task '{gate.task}' has tag '{gate.tag}' (its "
                           f"tags: {', '.join(sorted(tags[gate.task])) or 'none'})")
        if lm_eval_tasks is not None and gate.task not in scorers and gate.task not in lm_eval_tasks:
            known = sorted(scorers) + sorted(lm_eval_tasks)
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise BadInput(f"gate '{gate.label}': no task '{gate.task}' in this run (its tasks: {shown or 'none'})")
        # Other task names may be lm-eval tasks, groups or subtasks: those are checked against the run.
        if gate.task in scorers and gate.metric not in scorers[gate.task]:
            raise BadInput(f"gate '{gate.label}': task '{gate.task}' has no metric '{gate.metric}' "
                           f"(its scorers: {', '.join(scorers[gate.task])})")
        if baseline is not None and gate.max_drop is not None:
            _metric_row(baseline, gate, "baseline")


# ---- statistics -----------------------------------------------------------------------------------------------

def mcnemar(up: int, down: int) -> tuple[float, float, str]:
    """Two-sided McNemar test on the discordant pairs (up: run right where the baseline was wrong; down: the reverse).

    Returns (statistic, p_value, method). Below EXACT_BELOW discordant pairs the chi-square approximation is poor,
    so the exact binomial test is used: p = min(1, 2 * P(X <= min(up, down))), X ~ Binomial(up + down, 1/2).
    Otherwise chi-square with 1 df and continuity correction: (|up - down| - 1)^2 / (up + down).
    These are statsmodels' mcnemar(table, exact=True) and mcnemar(table, exact=False, correction=True).
    """
    k = up + down
    if k < EXACT_BELOW:
        low = min(up, down)
        p = 2 * sum(math.comb(k, i) for i in range(low + 1)) / 2**k
        return float(low), min(1.0, p), "mcnemar-exact"
    statistic = (abs(up - down) - 1) ** 2 / k
    return statistic, math.erfc(math.sqrt(statistic / 2)), "mcnemar-chi2"  # chi2(1) survival function


def paired_bootstrap_ci(new: list[float], base: list[float], *, level: float = 0.95, resamples: int = RESAMPLES,
                        seed: int = SEED) -> tuple[float, float]:
    """Percentile CI of mean(new - base), resampling pairs with replacement (numpy's default_rng(seed))."""
    from workbench.system.extras import require

    np = require("numpy", "the gate's paired bootstrap", "eval")
    diff = np.asarray(new, dtype=float) - np.asarray(base, dtype=float)
    n = diff.size
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    batch = max(1, 2_000_000 // n)  # bounds memory at ~16 MB of indices
    for start in range(0, resamples, batch):
        stop = min(start + batch, resamples)
        means[start:stop] = diff[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.percentile(means, [100 * tail, 100 * (1 - tail)])
    return float(low), float(high)


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def mcnemar_n_required(discordance: float, drop: float, alpha: float, power: float = POWER) -> int:
    """Pairs McNemar needs to detect a drop `drop` with the given power (Connor 1987, normal approximation):

        n = (z_{1-alpha/2} * sqrt(psi) + z_{power} * sqrt(psi - drop^2))^2 / drop^2

    psi is the discordance rate (share of pairs where the runs disagree), taken as the observed rate but at
    least `drop`, since a drop of `drop` needs at least that many discordant pairs.
    """
    psi = max(discordance, drop)
    root = _z(1 - alpha / 2) * math.sqrt(psi) + _z(power) * math.sqrt(max(psi - drop**2, 0.0))
    return math.ceil(root**2 / drop**2)


def mean_diff_n_required(sd: float, drop: float, alpha: float, power: float = POWER) -> int:
    """Pairs a paired mean comparison needs to detect a drop `drop`: n = ((z_{1-alpha/2} + z_{power}) * sd / drop)^2,
    sd the standard deviation of the paired differences (observed)."""
    return math.ceil(((_z(1 - alpha / 2) + _z(power)) * sd / drop) ** 2)


# ---- per-sample pairing --------------------------------------------------------------------------------------

def _usable(scores: dict[str, float], row: dict) -> bool:
    # Per-sample scores stand for the metric only when their mean is its value (not so for e.g. perplexity).
    value = row.get("value")
    return bool(scores) and value is not None and abs(mean(scores.values()) - value) < 1e-6


# ---- results --------------------------------------------------------------------------------------------------

@dataclass
class GateResult:
    gate: str
    task: str
    metric: str
    status: Status
    reason: str
    spec: dict
    higher_is_better: bool
    value: float | None
    baseline_value: float | None = None
    delta: float | None = None  # run - baseline: over the paired samples when there are any
    n: int | None = None  # paired samples, else the run's own n
    test: str | None = None  # mcnemar-exact | mcnemar-chi2 | bootstrap | normal-unpaired | None
    statistic: float | None = None
    p_value: float | None = None
    ci_low: float | None = None  # CI of delta at level 1 - significance
    ci_high: float | None = None
    up: int | None = None  # paired samples that scored higher in the run than in the baseline
    down: int | None = None
    only_in_run: int = 0  # ids left out of the pairing
    only_in_baseline: int = 0
    n_required: int | None = None  # for POWER to see a drop of max_drop
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GateReport:
    run_id: str
    checkpoint: str
    baseline_id: str | None
    baseline_checkpoint: str | None
    results: list[GateResult]
    warnings: list[str] = field(default_factory=list)
    judge_policy: list[dict] = field(default_factory=list)  # gate.judge_policy: judge gates' human calibration

    @property
    def uncalibrated_judge(self) -> list[dict]:
        """Judge gates run with --allow-uncalibrated-judge whose judge has not earned them."""
        return [p for p in self.judge_policy if not p["calibrated"]]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if r.status == "fail"]

    def summary(self) -> str:
        if self.passed:
            return f"gate passed: {len(self.results)} gate(s)"
        return (f"gate failed: {len(self.failures)} of {len(self.results)} gate(s): "
                + ", ".join(r.gate for r in self.failures))

    def to_dict(self) -> dict:
        return {"schema_version": 1, "passed": self.passed, "run_id": self.run_id, "checkpoint": self.checkpoint,
                "baseline_id": self.baseline_id, "baseline_checkpoint": self.baseline_checkpoint,
                "warnings": self.warnings, "judge_policy": self.judge_policy,
                "results": [r.to_dict() for r in self.results]}


# ---- evaluation -----------------------------------------------------------------------------------------------

def evaluate_gates(run: Run, baseline: Run | None, gates: list[GateSpec], *, resamples: int = RESAMPLES,
                   seed: int = SEED) -> GateReport:
    """Apply every gate to `run` (and versus `baseline` for max_drop). Unknown task or metric: BadInput."""
    from workbench.compare.runs import setting_differences

    results = [evaluate_gate(run, baseline, g, resamples=resamples, seed=seed) for g in gates]
    warnings = []
    if baseline is not None:
        warnings = [f"settings differ from the baseline, so deltas mix model and setup: {d}"
                    for d in setting_differences(baseline, run)]
    return GateReport(run_id=run.run_id, checkpoint=_name(run), baseline_id=baseline and baseline.run_id,
                      baseline_checkpoint=baseline and _name(baseline), results=results, warnings=warnings)


def _name(run: Run) -> str:
    return (run.manifest.get("checkpoint") or {}).get("name") or "?"


def _metric_row(run: Run, gate: GateSpec, which: str) -> dict:
    row = run.metric(gate.task, gate.row_metric)
    if row is not None:
        return row
    known = sorted({m["task"] for m in run.metrics})
    if gate.task not in known:
        raise BadInput(f"gate '{gate.label}': the {which} run {run.run_id} has no task '{gate.task}' "
                       f"(it has: {', '.join(known) or 'none'})")
    metrics = sorted(m["metric"] for m in run.metrics if m["task"] == gate.task)
    raise BadInput(f"gate '{gate.label}': the {which} run {run.run_id} has no metric '{gate.row_metric}' for task "
                   f"'{gate.task}' (it has: {', '.join(metrics)})")


def evaluate_gate(run: Run, baseline: Run | None, gate: GateSpec, *, resamples: int = RESAMPLES,
                  seed: int = SEED) -> GateResult:
    row = _metric_row(run, gate, "evaluated")
    hib = gate.higher_is_better if gate.higher_is_better is not None else row.get("higher_is_better")
    if hib is None and gate.max_drop is not None:
        raise BadInput(f"gate '{gate.label}': run {run.run_id} does not record whether higher is better for "
                       f"'{gate.metric}'; set higher_is_better in the gate")
    result = GateResult(gate=gate.label, task=gate.task, metric=gate.row_metric, status="pass", reason="",
                        spec=gate.model_dump(exclude_none=True), higher_is_better=hib is not False,
                        value=row.get("value"), n=row.get("n"))
    failed, reasons = [], []
    value = result.value
    if value is None:
        failed.append("the run has no value for this metric")
    if gate.min_value is not None and value is not None:
        ok = value >= gate.min_value
        (reasons if ok else failed).append(f"{value:.4f} {'>=' if ok else '<'} min_value {gate.min_value:g}")
    if gate.max_value is not None and value is not None:
        ok = value <= gate.max_value
        (reasons if ok else failed).append(f"{value:.4f} {'<=' if ok else '>'} max_value {gate.max_value:g}")

    base_row = baseline.metric(gate.task, gate.row_metric) if baseline is not None else None
    if gate.max_drop is not None and baseline is not None and base_row is None:
        _metric_row(baseline, gate, "baseline")  # raises, naming what the baseline has
    if base_row is not None and value is not None and base_row.get("value") is not None:
        _compare(result, run, baseline, gate, row, base_row, resamples=resamples, seed=seed)
        if gate.max_drop is not None:
            drop_fails = _drop_fails(result, gate)
            (failed if drop_fails else reasons).append(_drop_reason(result, gate))
            if not drop_fails:
                _warn_on_low_power(result, gate)
    elif gate.max_drop is not None:
        note = "no baseline" if baseline is None else "the baseline has no value for this metric"
        result.warnings.append(f"max_drop not checked: {note}")
        if not failed and not reasons:
            result.status = "skip"
            reasons.append(f"max_drop {gate.max_drop:g} not checked: {note}")
    if failed:
        result.status = "fail"
    result.reason = "; ".join(failed + reasons)
    return result


def _compare(result: GateResult, run: Run, baseline: Run, gate: GateSpec, row: dict, base_row: dict, *,
             resamples: int, seed: int) -> None:
    """Fill in the baseline value, the delta and the significance test."""
    result.baseline_value = base_row["value"]
    new = sample_scores(run, gate.task, gate.row_metric, row.get("source"), row.get("breakdown"))
    old = sample_scores(baseline, gate.task, gate.row_metric, base_row.get("source"), base_row.get("breakdown"))
    paired = sorted(new.keys() & old.keys())  # sorted: the result must not depend on sample order
    if not (_usable(new, row) and _usable(old, base_row) and paired):
        if gate.test != "auto":
            raise BadInput(f"gate '{gate.label}': test '{gate.test}' needs per-sample scores for this metric in "
                           "both runs, with ids in common")
        _compare_unpaired(result, gate, row, base_row)
        return
    result.only_in_run, result.only_in_baseline = len(new.keys() - old.keys()), len(old.keys() - new.keys())
    if result.only_in_run or result.only_in_baseline:
        result.warnings.append(f"{result.only_in_run} sample(s) only in the run and {result.only_in_baseline} "
                               "only in the baseline were left out of the paired comparison")
    x, y = [new[i] for i in paired], [old[i] for i in paired]
    binary = all(v in (0.0, 1.0) for v in x + y)
    test = gate.test if gate.test != "auto" else ("mcnemar" if binary else "bootstrap")
    if test == "mcnemar" and not binary:
        raise BadInput(f"gate '{gate.label}': test 'mcnemar' needs pass/fail (0/1) scores; "
                       f"'{gate.metric}' has others (use test: bootstrap)")
    n = len(paired)
    result.n = n
    result.delta = mean(x) - mean(y)
    result.up = sum(a > b for a, b in zip(x, y))
    result.down = sum(a < b for a, b in zip(x, y))
    result.ci_low, result.ci_high = paired_bootstrap_ci(x, y, level=1 - gate.significance, resamples=resamples,
                                                        seed=seed)
    if test == "mcnemar":
        result.statistic, result.p_value, result.test = mcnemar(result.up, result.down)
        if gate.max_drop:
            result.n_required = mcnemar_n_required((result.up + result.down) / n, gate.max_drop, gate.significance)
    else:
        result.test = "bootstrap"
        sd = stdev(a - b for a, b in zip(x, y)) if n > 1 else 0.0
        if gate.max_drop and sd > 0:
            result.n_required = mean_diff_n_required(sd, gate.max_drop, gate.significance)


def _compare_unpaired(result: GateResult, gate: GateSpec, row: dict, base_row: dict) -> None:
    result.delta = row["value"] - base_row["value"]
    se_a, se_b = row.get("stderr"), base_row.get("stderr")
    se = math.sqrt(se_a**2 + se_b**2) if se_a is not None and se_b is not None else 0.0
    if se <= 0:
        result.warnings.append("no per-sample scores or stderrs to test against: decided on the point estimate alone")
        return
    result.test = "normal-unpaired"
    result.statistic = result.delta / se
    result.p_value = math.erfc(abs(result.statistic) / math.sqrt(2))
    half = _z(1 - gate.significance / 2) * se
    result.ci_low, result.ci_high = result.delta - half, result.delta + half
    result.warnings.append("no paired per-sample scores: unpaired normal test on the runs' stderrs (less power)")
    detectable = (_z(1 - gate.significance / 2) + _z(POWER)) * se
    if gate.max_drop is not None and detectable > gate.max_drop:
        result.warnings.append(f"the smallest drop these stderrs can detect with {POWER:.0%} power is "
                               f"{detectable:.4f}, more than max_drop {gate.max_drop:g}")


def _warn_on_low_power(result: GateResult, gate: GateSpec) -> None:
    """For a max_drop gate that passed: say so when it could have missed a real drop of max_drop."""
    if result.n_required is None or result.n >= result.n_required:
        return
    # A CI that already excludes a drop of max_drop (e.g. a clear improvement) needs no more power.
    if result.ci_low > -gate.max_drop if result.higher_is_better else result.ci_high < gate.max_drop:
        return
    result.warnings.append(
        f"n={result.n} is too small to detect a drop of {gate.max_drop:g}: {result.n_required} paired samples give "
        f"{POWER:.0%} power at significance {gate.significance:g}, and the CI of delta does not rule such a drop "
        "out: a real regression that size may pass")


def _drop(result: GateResult) -> float:
    return -result.delta if result.higher_is_better else result.delta


def _significantly_worse(result: GateResult, gate: GateSpec) -> bool:
    if result.test is None:
        return True  # nothing to test with: the point estimate decides (warned)
    if result.p_value is not None:
        return result.p_value < gate.significance and _drop(result) > 0
    return result.ci_high < 0 if result.higher_is_better else result.ci_low > 0


def _drop_fails(result: GateResult, gate: GateSpec) -> bool:
    return _drop(result) > gate.max_drop and _significantly_worse(result, gate)


def _drop_reason(result: GateResult, gate: GateSpec) -> str:
    drop = _drop(result)
    if drop <= gate.max_drop:
        return f"change {result.delta:+.4f} within max_drop {gate.max_drop:g}"
    evidence = _evidence(result)
    if _significantly_worse(result, gate):
        return (f"dropped {drop:.4f} ({result.baseline_value:.4f} -> {result.value:.4f}), more than max_drop "
                f"{gate.max_drop:g}, and significant ({evidence})")
    return f"dropped {drop:.4f}, more than max_drop {gate.max_drop:g}, but not significant ({evidence}): within noise"


def _evidence(result: GateResult) -> str:
    if result.test is None:
        return "point estimate only"
    parts = []
    if result.p_value is not None:
        parts.append(f"{result.test} p={result.p_value:.3g}")
    else:
        parts.append(result.test)
    if result.ci_low is not None:
        parts.append(f"CI of delta [{result.ci_low:+.4f}, {result.ci_high:+.4f}]")
    if result.up is not None:
        worse, better = (result.down, result.up) if result.higher_is_better else (result.up, result.down)
        parts.append(f"{worse} worse, {better} better of {result.n} paired")
    return "; ".join(parts)
