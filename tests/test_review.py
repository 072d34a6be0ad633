"""Human review statistics, gold export and the judge's gate policy (issue 26, items 2 and 3).

The statistics are checked against numbers worked out by hand on small tables (the arithmetic is in the comments);
the gate policy through `wb eval` on the default model and the judge-demo suite."""

import json

import pytest
from hostile_support import assert_refused, run_cli, snapshot

from workbench.errors import BadInput
from workbench.review.labels import append_label, check_item, make_label
from workbench.store.runs import Store

SUITE, TASK = "judge-demo", "explain"
ITEMS = ["1", "2", "3", "4", "5", "6"]


def _orders(verdict: str) -> list[dict]:
    """A judge_pairwise record's two orders that combine into `verdict` ('win'/'loss' agreed; 'tie' a flip)."""
    if verdict == "win":
        return [{"a": "run", "said": "A", "winner": "run"}, {"a": "baseline", "said": "B", "winner": "run"}]
    if verdict == "loss":
        return [{"a": "run", "said": "B", "winner": "baseline"}, {"a": "baseline", "said": "A", "winner": "baseline"}]
    return [{"a": "run", "said": "A", "winner": "run"}, {"a": "baseline", "said": "A", "winner": "baseline"}]


def _run(store: Store, name: str, outputs: dict[str, str], judge: dict[str, dict] | None = None,
         suite: str = SUITE) -> str:
    with store.open_run("eval", {"checkpoint": {"name": name}, "suite": suite}) as run:
        rows = []
        for item, output in outputs.items():
            row = {"id": item, "messages": [{"role": "user", "content": f"q{item}"}], "output": output,
                   "reference": "r", "scores": {}}
            if judge and item in judge:
                row["judge"] = judge[item]
            rows.append(row)
        run.write_samples(TASK, rows)
        run.add_metric(TASK, "rouge_l", 0.5, n=len(rows), source="task")
    return run.run_id


def _pairwise(store: Store, a: str, b: str, reviewer: str, item: str, preferred: str) -> None:
    # A always shown on the left, so choices read straight off: A -> left, B -> right
    choice = {"A": "left", "B": "right"}.get(preferred, preferred)
    append_label(store, make_label(reviewer=reviewer, kind="pairwise", suite=SUITE, task=TASK, item=item,
                                   runs=[a, b], shown=[a, b], choice=choice, seed=0))


# Two reviewers on six items, and the pairwise judge's verdicts (B's records, judged against A):
#   item      1    2    3    4    5    6
#   ann       B    B    A    tie  B    both_bad
#   bob       B    A    A    tie  B    both_bad
#   judge     B    A    A    B    B    tie (its two orders flipped)
ANN = ["B", "B", "A", "tie", "B", "both_bad"]
BOB = ["B", "A", "A", "tie", "B", "both_bad"]
JUDGE = ["win", "loss", "loss", "win", "win", "tie"]


@pytest.fixture
def pairwise_store(tmp_path):
    store = Store(tmp_path / "store")
    a = _run(store, "base", {i: f"base answer {i}" for i in ITEMS})
    judge = {i: {"judge_pairwise": {"baseline_run": a, "orders": _orders(v), "flipped": v == "tie", "verdict": v,
                                    "baseline_output": f"base answer {i}"}} for i, v in zip(ITEMS, JUDGE)}
    b = _run(store, "tuned", {i: f"tuned answer number {i}" for i in ITEMS}, judge)
    for item, x, y in zip(ITEMS, ANN, BOB):
        _pairwise(store, a, b, "ann", item, x)
        _pairwise(store, a, b, "bob", item, y)
    return store, a, b


def test_pairwise_statistics_match_the_hand_computed_values(pairwise_store):
    from sklearn.metrics import cohen_kappa_score

    from workbench.review.stats import review_stats

    store, a, b = pairwise_store
    report = review_stats(store, [store.load(a), store.load(b)])
    assert report["labels"] == 12 and report["per_reviewer"] == {"ann": 6, "bob": 6}
    entry = report["tasks"][TASK]
    rev = entry["reviewers"]
    # Cohen's kappa, ann vs bob: they agree on 5 of 6 items, po = 5/6. Marginals over (A, B, tie, both_bad):
    # ann (1, 3, 1, 1), bob (2, 2, 1, 1): pe = (1*2 + 3*2 + 1*1 + 1*1) / 36 = 10/36.
    # kappa = (30/36 - 10/36) / (26/36) = 20/26
    assert rev["kappa_kind"] == "cohen" and rev["kappa"] == pytest.approx(20 / 26)
    # Krippendorff's alpha (nominal), 12 pairable values: the only disagreement, item 2 (B, A), puts 2 in the
    # off-diagonal of the coincidence matrix: Do = 2/12. Value totals A 3, B 5, tie 2, both_bad 2:
    # De = (12^2 - (9 + 25 + 4 + 4)) / (12 * 11) = 102/132. alpha = 1 - (2/12) / (102/132) = 1 - 264/1224 = 40/51
    assert rev["alpha"] == pytest.approx(40 / 51)
    assert rev["alpha_ci"][0] <= rev["alpha"] <= rev["alpha_ci"][1]
    # Win rate of B: items' kept labels 1 [B] 1, 2 [A, B] (split: kept both) 0.5, 3 [A] 0, 4 [tie] 0.5, 5 [B] 1;
    # item 6 both_bad, apart. (1 + 0.5 + 0 + 0.5 + 1) / 5 = 0.6
    wr = entry["win_rate"]
    assert (wr["win_rate"], wr["items"], wr["both_bad"]) == (pytest.approx(0.6), 5, 1)
    assert 0 <= wr["ci"][0] <= 0.6 <= wr["ci"][1] <= 1
    # Judge vs people, one pair per kept human label (both_bad as tie): (B,B) (A,A) (A,B) (A,A) (B,tie) (B,B)
    # (tie,tie): 5 of 7 agree, po = 5/7. Judge (A, B, tie) = (3, 3, 1), people (2, 3, 2): pe = (6 + 9 + 2)/49.
    # kappa = (35/49 - 17/49) / (32/49) = 18/32
    judge = entry["judge"]["judge_pairwise"]
    assert judge["kappa"] == pytest.approx(18 / 32) and judge["items"] == 6
    flat_judge, flat_human = list("BAAABBT"), list("BAABTBT")  # the same 7 pairs, cross-checked with scikit-learn
    assert judge["kappa"] == pytest.approx(cohen_kappa_score(flat_judge, flat_human))
    # The judge's position: 1 flip in 6 pairs; its 12 single-order verdicts said A 7 times (5 agreed pairs say
    # A once each, the flipped pair twice): 7/12
    assert judge["judge_position"] == {"flip_rate": pytest.approx(1 / 6), "first_position_rate": pytest.approx(7 / 12)}
    # Reviewers' position, A always shown left: ann's decisive choices right, right, left, right (1 of 4 left),
    # bob's right, left, left, right (2 of 4); all 3 of 8; exact two-sided binomial p = 2 * (1+8+28+56)/256
    pos = entry["reviewer_position"]
    assert (pos["ann"]["left_rate"], pos["bob"]["left_rate"], pos["(all)"]["left_rate"]) == (0.25, 0.5, 0.375)
    assert pos["(all)"]["p_value"] == pytest.approx(2 * 93 / 256)


def test_fleiss_kappa_for_three_reviewers_matches_the_hand_computed_value():
    from workbench.review.stats import reviewer_agreement

    # 3 raters, 4 items: [A,A,A] [B,B,B] [A,A,B] [B,B,A]. P_i = (sum n_ij^2 - 3) / 6: 1, 1, 1/3, 1/3; mean 2/3.
    # p_A = p_B = 6/12, Pe = 1/2. kappa = (2/3 - 1/2) / (1/2) = 1/3
    table = {item: dict(zip("xyz", row)) for item, row in zip("1234", ("AAA", "BBB", "AAB", "BBA"))}
    out = reviewer_agreement(table)
    assert out["kappa_kind"] == "fleiss" and out["kappa"] == pytest.approx(1 / 3)
    assert out["reviewers"] == 3 and out["items"] == 4


def _rubric_store(tmp_path, human: dict[str, list[int]], judge_scores: list[int], suite: str = SUITE):
    store = Store(tmp_path / "store")
    items = [str(i) for i in range(len(judge_scores))]
    judge = {i: {"judge": {"score": s, "normalized": (s - 1) / 4, "rationale": "-"}}
             for i, s in zip(items, judge_scores)}
    run = _run(store, "tuned", {i: f"answer <b>{i}</b>" for i in items}, judge, suite=suite)
    for reviewer, scores in human.items():
        for item, score in zip(items, scores):
            append_label(store, make_label(reviewer=reviewer, kind="rubric", suite=suite, task=TASK, item=item,
                                           runs=[run], score=score, scale=[1, 5]))
    return store, run


def test_rubric_gold_export_keeps_ties_and_is_the_gold_file_a_suite_reads(tmp_path, capsys, monkeypatch):
    from workbench.eval.suites import load_suite

    store, run = _rubric_store(tmp_path, {"ann": [5, 4, 2], "bob": [5, 3, 2]}, [5, 4, 1])
    gold = tmp_path / "gold.jsonl"
    res = run_cli(["review", "export", run, "-o", gold, "--store", store.root], capsys)
    assert res.code == 0, res.stderr
    rows = [json.loads(line) for line in gold.read_text().splitlines()]
    # item 1 split 4/3: both grades kept, one row each
    assert [(r["id"], r["score"]) for r in rows] == [("0", 5), ("1", 3), ("1", 4), ("2", 2)]
    assert rows[0]["answer"] == "answer <b>0</b>" and rows[1]["votes"] == {"3": 1, "4": 1}
    # the judge reliability report reads it as a task's gold: (a suite whose items have those ids)
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "prompt": f"q{i}", "reference": "r"}) + "\n" for i in range(3)))
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: s\ntasks:\n  - name: {TASK}\n    data: {data}\n    gold: {gold}\n"
                     "    scorers: [{type: judge, rubric: '5 good, 1 bad'}]\n")
    assert len(load_suite(str(suite)).gold[TASK]) == 4

    report = run_cli(["review", "stats", run, "--store", store.root, "--json"], capsys)
    stats = json.loads(report.stdout)["tasks"][TASK]
    # the judge vs people, quadratic weights, pairs (5,5) (4,3) (4,4) (1,2): scikit-learn on the same pairs
    from sklearn.metrics import cohen_kappa_score

    expected = cohen_kappa_score([5, 4, 4, 1], [5, 3, 4, 2], labels=[1, 2, 3, 4, 5], weights="quadratic")
    assert stats["judge"]["judge"]["kappa"] == pytest.approx(expected)
    assert stats["reviewers"]["level"] == "ordinal" and stats["labels"] == 6


def test_judge_gate_policy_accepts_and_refuses_as_the_numbers_say(tmp_path):
    from workbench.config import GateSpec, SuiteConfig
    from workbench.gate.judge_policy import judge_gate_policy

    # 10 items graded alike by two people and the judge: kappa 1, so its CI's lower bound is 1 as well
    scores = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    store, _ = _rubric_store(tmp_path, {"ann": scores, "bob": scores}, scores)
    suite = SuiteConfig.model_validate({"name": SUITE, "tasks": [{"name": TASK, "data": "x.jsonl", "scorers": [
        {"type": "judge", "rubric": "r"}, {"type": "judge_pairwise"}, {"type": "rouge_l"}]}]})

    def gate(metric, **kw):
        return GateSpec(task=TASK, metric=metric, min_value=0.1, **kw)

    [ok] = judge_gate_policy([gate("judge", min_labels=20), gate("rouge_l")], suite, store)
    assert ok["calibrated"] and ok["labels"] == 20 and ok["kappa"] == pytest.approx(1.0)
    with pytest.raises(BadInput, match=r"20 of 21 human rubric labels \(1 missing\)"):
        judge_gate_policy([gate("judge", min_labels=21)], suite, store)
    with pytest.raises(BadInput, match=r"0 of 50 human pairwise labels"):  # the defaults; no pairwise labels
        judge_gate_policy([gate("judge_pairwise")], suite, store)
    [allowed] = judge_gate_policy([gate("judge_pairwise")], suite, store, allow_uncalibrated=True)
    assert not allowed["calibrated"] and allowed["allowed_uncalibrated"]


def test_wb_eval_refuses_an_uncalibrated_judge_gate_before_any_model_loads(tmp_path, capsys, monkeypatch):
    from workbench.eval import pipeline

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(pipeline, "open_runtime", no_model)
    store, _ = _rubric_store(tmp_path, {"ann": [5, 4, 2], "bob": [5, 3, 2]}, [5, 4, 1])
    gates = tmp_path / "gates.yaml"
    gates.write_text(f"min_kappa: 0.5\ngates:\n  - {{task: {TASK}, metric: judge, min_value: 0.1}}\n")
    before = snapshot(tmp_path)
    res = run_cli(["eval", "default", "--suite", SUITE, "--limit", "3", "--gates", gates, "--store", store.root],
                  capsys)
    assert_refused(res, 3, ("gate 'explain/judge'", "6 of 50 human rubric labels (44 missing)",
                            "below min_kappa 0.5", "--allow-uncalibrated-judge"), before, tmp_path)


@pytest.mark.slow
def test_wb_eval_with_allow_uncalibrated_judge_runs_and_records_it(tmp_path, capsys):
    store, _ = _rubric_store(tmp_path, {"ann": [5, 4, 2], "bob": [5, 3, 2]}, [5, 4, 1])
    gates = tmp_path / "gates.yaml"
    gates.write_text(f"gates:\n  - {{task: {TASK}, metric: judge, min_value: 0.0, min_labels: 6, min_kappa: 0.9}}\n")
    junit, md = tmp_path / "gate.xml", tmp_path / "gate.md"
    res = run_cli(["eval", "default", "--suite", SUITE, "--limit", "2", "--gates", gates, "--store", store.root,
                   "--allow-uncalibrated-judge", "--junit", junit, "--markdown", md, "--json"], capsys)
    assert res.code == 0, res.stderr
    payload = json.loads(res.stdout)
    [policy] = payload["gate"]["judge_policy"]
    assert policy["labels"] == 6 and not policy["calibrated"] and policy["allowed_uncalibrated"]
    assert store.load(payload["run_id"]).manifest["judge_gate_policy"] == [policy]
    xml = junit.read_text()
    assert 'name="uncalibrated_judge:explain/judge"' in xml and "below min_kappa 0.9" in xml, xml
    assert "Judge not calibrated against people" in md.read_text()


# ---- bad input: one line, exit 3, nothing written -----------------------------------------------------------

def test_review_of_two_runs_of_different_suites_is_refused(tmp_path, capsys):
    store = Store(tmp_path / "store")
    a = _run(store, "base", {"1": "x"})
    b = _run(store, "other", {"1": "y"}, suite="another-suite")
    before = snapshot(tmp_path)
    for argv in (["review", "stats", a, b], ["review", "export", a, b, "-o", tmp_path / "gold.jsonl"]):
        res = run_cli([*argv, "--store", store.root], capsys)
        assert_refused(res, 3, ("are evals of different suites", "'judge-demo' and 'another-suite'"), before,
                       tmp_path)


def test_gold_export_of_a_run_with_no_labels_is_refused(tmp_path, capsys):
    store = Store(tmp_path / "store")
    run = _run(store, "base", {"1": "x"})
    before = snapshot(tmp_path)
    res = run_cli(["review", "export", run, "-o", tmp_path / "gold.jsonl", "--store", store.root], capsys)
    assert_refused(res, 3, (f"no rubric labels of run {run}", "nothing to export"), before, tmp_path)


def test_a_label_for_an_item_the_run_does_not_have_is_refused(tmp_path):
    store = Store(tmp_path / "store")
    run = store.load(_run(store, "base", {"1": "x"}))
    with pytest.raises(BadInput, match=f"run {run.run_id}: task 'explain' has no item '99'$"):
        check_item(run, TASK, "99")
    assert not (store.root / "reviews").exists()


@pytest.mark.parametrize("where", ["file", "gate"])
def test_min_kappa_outside_minus_one_to_one_is_refused(tmp_path, capsys, where):
    gates = tmp_path / "gates.yaml"
    rule = f"{{task: {TASK}, metric: judge, min_value: 0.1{', min_kappa: 1.5' if where == 'gate' else ''}}}"
    gates.write_text(("min_kappa: 1.5\n" if where == "file" else "") + f"gates:\n  - {rule}\n")
    before = snapshot(tmp_path)
    res = run_cli(["eval", "default", "--suite", SUITE, "--gates", gates, "--store", tmp_path / "store"], capsys)
    field = "min_kappa" if where == "file" else "gates.0.min_kappa"
    assert_refused(res, 3, (str(gates), f"{field}: Input should be less than or equal to 1"), before, tmp_path)
