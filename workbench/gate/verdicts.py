"""The gates' significance verdict on every metric of a comparison: is B significantly better or worse than A by
the same paired tests a `max_drop` gate applies (McNemar for pass/fail scores, paired bootstrap otherwise, an
unpaired test on stderrs without samples)? `wb eval --matrix` and the dashboard's Compare page show these."""

from workbench.config import GateSpec
from workbench.errors import BadInput
from workbench.gate.rules import evaluate_gate
from workbench.store import Run


def significance_verdicts(a: Run, b: Run, comparison) -> dict:
    """The verdict per (task, metric) of `comparison` (compare_runs(a, b)) for B against A as baseline."""
    verdicts = {}
    for row in comparison.rows:
        key = (row.task, row.metric)
        if row.a is None or row.b is None or row.higher_is_better is None:
            verdicts[key] = "-"
            continue
        # max_drop 0: any drop is checked; the verdict below reads the test itself, in both directions.
        spec = GateSpec(task=row.task, metric=row.metric, max_drop=0.0, higher_is_better=row.higher_is_better)
        try:
            verdicts[key] = _verdict(evaluate_gate(b, a, spec), spec.significance)
        except BadInput as exc:
            verdicts[key] = f"not tested: {exc}"
    return verdicts


def _verdict(result, alpha: float) -> str:
    if result.test is None:
        return "not tested (no per-sample scores or stderrs)"
    if result.p_value is not None:
        significant = result.p_value < alpha
        evidence = f"{result.test} p={result.p_value:.3g}"
    else:
        significant = result.ci_low > 0 or result.ci_high < 0
        evidence = f"{result.test} {1 - alpha:.0%} CI of Δ [{result.ci_low:+.4f}, {result.ci_high:+.4f}]"
    if not significant or not result.delta:
        return f"no significant difference ({evidence})"
    better = (result.delta > 0) == result.higher_is_better
    return f"significantly {'better' if better else 'worse'} ({evidence})"
