import random

import pytest

from workbench.config import GateSpec, SuiteConfig, load_yaml_model
from workbench.errors import BadInput
from workbench.gate.rules import (
    check_gates,
    evaluate_gate,
    evaluate_gates,
    load_gates,
    mcnemar,
    mcnemar_n_required,
    mean_diff_n_required,
    paired_bootstrap_ci,
)
from workbench.store import Store

np = pytest.importorskip("numpy", reason="needs numpy (installed with torch by scripts/setup.sh)")


def _run(store, name, scores, *, task="t", metric="exact", ids=None, stderr=None, hib=True, source="task"):
    """An eval run as `wb eval` writes it: per-sample scores plus the metric row (their mean)."""
    ids = ids or [f"q{i:03d}" for i in range(len(scores))]
    with store.open_run("eval", {"checkpoint": {"name": name}, "suite": "s"}) as run:
        run.write_samples(task, [{"id": i, "messages": [], "output": "", "reference": "",
                                  "scores": {metric: s}} for i, s in zip(ids, scores)])
        run.add_metric(task, metric, sum(scores) / len(scores), stderr=stderr, n=len(scores),
                       higher_is_better=hib, source=source)
    return store.load(run.run_id)


def _flip(scores, worse, better):
    """Copy of pass/fail `scores` with `worse` passes turned to fails and `better` fails turned to passes."""
    out = list(scores)
    passes = [i for i, s in enumerate(out) if s == 1]
    fails = [i for i, s in enumerate(out) if s == 0]
    for i in passes[:worse]:
        out[i] = 0
    for i in fails[:better]:
        out[i] = 1
    return out


BASE = [1] * 70 + [0] * 30  # 100 items, 0.70


# ---- the numbers, against statsmodels and scipy ------------------------------------------------------------------

@pytest.mark.parametrize("up,down", [(0, 0), (3, 3), (1, 8), (0, 5), (12, 12), (2, 22),  # exact: < 25 discordant
                                     (10, 15), (40, 20), (5, 30), (100, 130), (13, 13)])  # chi-square
def test_mcnemar_equals_statsmodels(up, down):
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    table = [[50, up], [down, 40]]  # the off-diagonal cells are the discordant pairs; the diagonal is unused
    statistic, p, method = mcnemar(up, down)
    exact = up + down < 25
    ref = sm_mcnemar(table, exact=exact, correction=True)
    assert method == ("mcnemar-exact" if exact else "mcnemar-chi2")
    assert p == pytest.approx(float(ref.pvalue), rel=1e-12, abs=1e-15)
    assert statistic == pytest.approx(float(ref.statistic), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_bootstrap_ci_close_to_scipy(seed):
    from scipy.stats import bootstrap

    gen = np.random.default_rng(42 + seed)
    base = gen.uniform(0, 1, 150)
    new = np.clip(base + gen.normal(-0.03, 0.15, 150), 0, 1)
    low, high = paired_bootstrap_ci(list(new), list(base), level=0.9, resamples=10_000, seed=seed)
    ref = bootstrap((new, base), lambda a, b, axis: np.mean(a - b, axis=axis), paired=True, vectorized=True,
                    method="percentile", n_resamples=10_000, confidence_level=0.9, rng=seed)
    se = np.std(new - base, ddof=1) / np.sqrt(150)
    # Same estimator, different resampling streams: bounds agree to Monte Carlo error (~0.03 standard errors).
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.1 * se)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.1 * se)
    assert paired_bootstrap_ci(list(new), list(base), level=0.9, seed=seed) == (low, high)  # seeded: repeatable


def test_mean_diff_power_equals_statsmodels_one_sample_z():
    from statsmodels.stats.power import NormalIndPower

    for sd, drop in [(0.3, 0.05), (0.1, 0.02), (0.5, 0.1)]:
        ref = NormalIndPower().solve_power(effect_size=drop / sd, alpha=0.05, power=0.8, ratio=0)
        assert mean_diff_n_required(sd, drop, 0.05) == int(np.ceil(ref))


def test_mcnemar_power_formula():
    # Connor (1987): psi=0.1, delta=0.05 -> (1.95996*sqrt(.1) + 0.84162*sqrt(.0975))^2 / .0025 = 311.6
    assert mcnemar_n_required(0.1, 0.05, 0.05) == 312
    assert mcnemar_n_required(0.0, 0.05, 0.05) == mcnemar_n_required(0.05, 0.05, 0.05)  # psi is at least delta


# ---- decisions on runs written with the Store API ----------------------------------------------------------------

def test_min_value_passes_and_fails(tmp_path):
    run = _run(Store(tmp_path), "tuned", BASE)
    ok, bad = evaluate_gates(run, None, [GateSpec(task="t", metric="exact", min_value=0.7),
                                         GateSpec(task="t", metric="exact", min_value=0.75)]).results
    assert ok.status == "pass" and "0.7000 >= min_value 0.7" in ok.reason
    assert bad.status == "fail" and "0.7000 < min_value 0.75" in bad.reason


def test_max_value_for_lower_is_better(tmp_path):
    run = _run(Store(tmp_path), "tuned", [2.0, 3.0], metric="ppl", hib=False)
    report = evaluate_gates(run, None, [GateSpec(task="t", metric="ppl", max_value=2.4)])
    assert not report.passed and "2.5000 > max_value 2.4" in report.results[0].reason


def test_significant_drop_beyond_max_drop_fails(tmp_path):
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    store = Store(tmp_path)
    base = _run(store, "base", BASE)
    new = _run(store, "tuned", _flip(BASE, worse=15, better=1))
    report = evaluate_gates(new, base, [GateSpec(task="t", metric="exact", max_drop=0.05)])
    (r,) = report.results
    assert not report.passed and r.status == "fail"
    assert (r.up, r.down, r.n, r.test) == (1, 15, 100, "mcnemar-exact")
    assert r.delta == pytest.approx(-0.14) and r.baseline_value == pytest.approx(0.70)
    assert r.p_value == pytest.approx(sm_mcnemar([[0, 1], [15, 0]], exact=True).pvalue, rel=1e-12)
    assert r.ci_high < 0 < -r.ci_low
    assert "significant" in r.reason and "more than max_drop 0.05" in r.reason
    assert r.n_required > r.n and not r.warnings  # low power, but the drop was caught: nothing to warn about
    assert report.summary() == "gate failed: 1 of 1 gate(s): t/exact"


def test_drop_within_max_drop_passes_even_when_significant(tmp_path):
    store = Store(tmp_path)
    base = _run(store, "base", BASE)
    new = _run(store, "tuned", _flip(BASE, worse=15, better=1))
    (r,) = evaluate_gates(new, base, [GateSpec(task="t", metric="exact", max_drop=0.15)]).results
    assert r.status == "pass" and r.p_value < 0.01 and "within max_drop 0.15" in r.reason


def test_drop_beyond_max_drop_but_not_significant_is_noise(tmp_path):
    store = Store(tmp_path)
    base = _run(store, "base", BASE)
    new = _run(store, "tuned", _flip(BASE, worse=8, better=4))  # drop 0.04 > 0.02, but 8 vs 4 is a coin toss
    (r,) = evaluate_gates(new, base, [GateSpec(task="t", metric="exact", max_drop=0.02)]).results
    assert r.delta == pytest.approx(-0.04)
    assert r.status == "pass" and r.p_value == pytest.approx(0.388, abs=1e-3)
    assert "not significant" in r.reason
    assert any("too small to detect a drop of 0.02" in w for w in r.warnings)


def test_same_model_in_another_order_does_not_trip(tmp_path):
    store = Store(tmp_path)
    gen = random.Random(0)
    scores = [gen.random() for _ in range(80)]
    ids = [f"q{i}" for i in range(80)]
    base = _run(store, "base", scores, ids=ids, metric="f1")
    order = list(range(80))
    gen.shuffle(order)
    new = _run(store, "again", [scores[i] for i in order], ids=[ids[i] for i in order], metric="f1")
    (r,) = evaluate_gates(new, base, [GateSpec(task="t", metric="f1", max_drop=0.0)]).results
    assert r.test == "bootstrap" and r.status == "pass"
    assert r.delta == pytest.approx(0.0) and (r.ci_low, r.ci_high) == pytest.approx((0.0, 0.0))


def test_reruns_of_one_model_rarely_trip_where_a_point_rule_would(tmp_path):
    """Sampling noise only: 40 pairs of sampled (temperature > 0) runs of one model, per-item pass rates fixed."""
    store = Store(tmp_path)
    gen = random.Random(7)
    rates = [gen.choice([0.1, 0.5, 0.9, 1.0]) for _ in range(200)]
    draw = lambda: [int(gen.random() < p) for p in rates]  # noqa: E731
    gate = GateSpec(task="t", metric="exact", max_drop=0.02)
    results = [evaluate_gate(_run(store, "again", draw()), _run(store, "base", draw()), gate, resamples=200)
               for _ in range(40)]
    naive = sum(-r.delta > 0.02 for r in results)
    tripped = sum(r.status == "fail" for r in results)
    assert naive >= 8  # a rule on the point estimate alone would block many identical models
    assert tripped <= 2


def test_unpaired_ids_are_reported_and_left_out(tmp_path):
    store = Store(tmp_path)
    base = _run(store, "base", [1, 1, 0, 1], ids=["a", "b", "c", "d"])
    new = _run(store, "tuned", [1, 0, 1, 1, 0], ids=["a", "b", "c", "e", "f"])
    (r,) = evaluate_gates(new, base, [GateSpec(task="t", metric="exact", max_drop=0.5)]).results
    assert (r.n, r.only_in_run, r.only_in_baseline) == (3, 2, 1)
    assert r.delta == pytest.approx(0.0)  # a, b, c: 2/3 in both
    assert any("2 sample(s) only in the run and 1 only in the baseline" in w for w in r.warnings)


def test_lower_is_better_drop_is_an_increase(tmp_path):
    store = Store(tmp_path)
    base = _run(store, "base", [0.1] * 50 + [0.2] * 50, metric="err", hib=False)
    new = _run(store, "tuned", [0.3] * 50 + [0.4] * 50, metric="err", hib=False)
    (r,) = evaluate_gates(new, base, [GateSpec(task="t", metric="err", max_drop=0.1)]).results
    assert r.status == "fail" and r.delta == pytest.approx(0.2) and r.ci_low > 0


def test_lm_eval_samples_pair_by_doc_and_filter(tmp_path):
    store = Store(tmp_path)

    def lm_run(name, strict):
        with store.open_run("eval", {"checkpoint": {"name": name}}) as run:
            rows = [{"doc_id": i, "filter": f, "metrics": {"exact_match": v}}
                    for i, s in enumerate(strict) for f, v in (("strict-match", s), ("flexible-extract", 1.0))]
            run.write_samples("lm-eval.gsm8k", rows)
            run.add_metric("gsm8k", "exact_match,strict-match", sum(strict) / len(strict), n=len(strict),
                           source="lm-eval")
        return store.load(run.run_id)

    base, new = lm_run("base", [1] * 30), lm_run("tuned", [0] * 28 + [1] * 2)
    (r,) = evaluate_gates(new, base, [GateSpec(task="gsm8k", metric="exact_match,strict-match",
                                               max_drop=0.1)]).results
    assert (r.test, r.n, r.down, r.up) == ("mcnemar-chi2", 30, 28, 0) and r.status == "fail"


def test_without_samples_falls_back_to_unpaired_stderrs(tmp_path):
    store = Store(tmp_path)

    def agg_run(value):
        with store.open_run("eval", {"checkpoint": {"name": "x"}}) as run:
            run.add_metric("mmlu", "acc", value, stderr=0.01, n=2000, source="lm-eval")
        return store.load(run.run_id)

    base, new = agg_run(0.60), agg_run(0.50)
    (r,) = evaluate_gates(new, base, [GateSpec(task="mmlu", metric="acc", max_drop=0.05)]).results
    assert r.test == "normal-unpaired" and r.status == "fail"
    assert r.statistic == pytest.approx(-0.1 / (0.01 * 2**0.5))


def test_a_run_without_a_value_fails(tmp_path):
    store = Store(tmp_path)
    base = _run(store, "base", BASE)
    with store.open_run("eval", {"checkpoint": {"name": "broken"}}) as run:
        run.add_metric("t", "exact", None, n=0, source="task")
    (r,) = evaluate_gates(store.load(run.run_id), base, [GateSpec(task="t", metric="exact", max_drop=0.1)]).results
    assert r.status == "fail" and r.reason == "the run has no value for this metric"


def test_no_baseline_skips_max_drop_but_checks_min_value(tmp_path):
    run = _run(Store(tmp_path), "tuned", BASE)
    drop_only, both = evaluate_gates(run, None, [GateSpec(task="t", metric="exact", max_drop=0.02),
                                                 GateSpec(task="t", metric="exact", max_drop=0.02,
                                                          min_value=0.9)]).results
    assert drop_only.status == "skip" and "no baseline" in drop_only.reason
    assert both.status == "fail"


def test_large_n_with_few_discordant_pairs_has_no_power_warning(tmp_path):
    store = Store(tmp_path)
    base_scores = [1] * 1400 + [0] * 600
    base = _run(store, "base", base_scores)
    new = _run(store, "tuned", _flip(base_scores, worse=10, better=10))
    (r,) = evaluate_gates(new, base, [GateSpec(task="t", metric="exact", max_drop=0.05)]).results
    assert r.status == "pass" and r.n_required < 2000 and not r.warnings


def test_settings_that_differ_are_warned(tmp_path):
    store = Store(tmp_path)
    base = _run(store, "base", BASE)
    with store.open_run("eval", {"checkpoint": {"name": "x"}, "suite": "other"}) as run:
        run.write_samples("t", [{"id": f"q{i:03d}", "scores": {"exact": s}} for i, s in enumerate(BASE)])
        run.add_metric("t", "exact", 0.7, n=100, source="task")
    report = evaluate_gates(store.load(run.run_id), base, [GateSpec(task="t", metric="exact", max_drop=0.1)])
    assert report.passed and any("suite: 's' vs 'other'" in w for w in report.warnings)


# ---- bad input ----------------------------------------------------------------------------------------------------

def test_unknown_task_or_metric_names_the_gate(tmp_path):
    store = Store(tmp_path)
    run = _run(store, "tuned", BASE)
    with pytest.raises(BadInput, match=r"gate 'mine'.*no task 'nope' \(it has: t\)"):
        evaluate_gates(run, None, [GateSpec(name="mine", task="nope", metric="exact", min_value=0.5)])
    with pytest.raises(BadInput, match=r"gate 't/acc'.*no metric 'acc' for task 't' \(it has: exact\)"):
        evaluate_gates(run, None, [GateSpec(task="t", metric="acc", min_value=0.5)])
    other = _run(store, "base", BASE, metric="f1")
    with pytest.raises(BadInput, match=r"gate 't/exact': the baseline run"):
        evaluate_gates(run, other, [GateSpec(task="t", metric="exact", max_drop=0.1)])


def test_mcnemar_on_continuous_scores_is_bad_input(tmp_path):
    store = Store(tmp_path)
    base, new = _run(store, "a", [0.5, 1.0]), _run(store, "b", [0.5, 0.0])
    with pytest.raises(BadInput, match="gate 't/exact': test 'mcnemar' needs pass/fail"):
        evaluate_gates(new, base, [GateSpec(task="t", metric="exact", max_drop=0.1, test="mcnemar")])


def test_bad_gate_specs_name_their_keys(tmp_path):
    path = tmp_path / "gates.yaml"
    path.write_text("gates:\n  - {task: t, metric: exact, max_drop: -0.1}\n"
                    "  - {task: t, metric: exact, min_valu: 0.5}\n"
                    "  - {task: t, metric: exact}\n"
                    "  - {task: t, metric: exact, min_value: 0.5, test: ttest}\n")
    with pytest.raises(BadInput) as err:
        load_gates(path)
    text = str(err.value)
    assert str(path) in text
    for key in ("gates.0.max_drop", "gates.1.min_valu", "gates.2: Value error, a gate needs", "gates.3.test"):
        assert key in text


def test_gates_load_from_a_file_and_from_a_suite(tmp_path):
    (tmp_path / "gates.yaml").write_text("gates:\n  - {task: t, metric: exact, max_drop: 0.02, significance: 0.1}\n")
    (gate,) = load_gates(tmp_path / "gates.yaml")
    assert (gate.label, gate.max_drop, gate.significance, gate.test) == ("t/exact", 0.02, 0.1, "auto")
    (tmp_path / "suite.yaml").write_text(
        "name: s\ntasks:\n  - {name: t, data: d.jsonl, scorers: [{type: exact}]}\n"
        "gates:\n  - {task: t, metric: exact, min_value: 0.5}\n  - {task: mmlu, metric: acc, max_drop: 0.02}\n")
    suite = load_yaml_model(tmp_path / "suite.yaml", SuiteConfig)
    check_gates(suite.gates, suite)  # mmlu is left to the run: lm-eval task names are only known there
    with pytest.raises(BadInput, match=r"gate 't/json_valid': task 't' has no metric 'json_valid' \(its scorers"):
        check_gates([GateSpec(task="t", metric="json_valid", min_value=0.5)], suite)
    baseline = _run(Store(tmp_path / "store"), "base", [1, 0])
    check_gates(suite.gates[:1], suite, baseline)
    with pytest.raises(BadInput, match=r"gate 'mmlu/acc': the baseline run .* has no task 'mmlu' \(it has: t\)"):
        check_gates(suite.gates, suite, baseline)


def test_no_power_warning_when_the_ci_already_rules_the_drop_out(tmp_path):
    store = Store(tmp_path)
    base = _run(store, "base", BASE)
    new = _run(store, "tuned", _flip(BASE, worse=0, better=25))  # a clear improvement, many discordant pairs
    (r,) = evaluate_gates(new, base, [GateSpec(task="t", metric="exact", max_drop=0.02)]).results
    assert r.n_required > r.n and r.ci_low > -0.02 and not r.warnings
