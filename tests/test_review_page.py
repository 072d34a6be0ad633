"""The Review page under Streamlit's AppTest, and the rows it shows (workbench.review.items): what is offered for
review, what is written per label, where a reviewer resumes, and what a reviewer is (not) shown."""

import pytest
from review_support import seed_review_store

from workbench.dashboard.views import as_text
from workbench.review import items
from workbench.review.labels import read_labels, sides
from workbench.store import Store
from workbench.system.content import content_dir

pytest.importorskip("streamlit", reason="needs the dashboard extra (pip install 'ckpt-workbench[dashboard]')")
from streamlit.testing.v1 import AppTest

APP = str(content_dir("dashboards") / "app.py")


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    monkeypatch.setenv("WB_STORE", str(store.root))
    return store, *seed_review_store(store)


def review_page(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/review.py")
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    return "\n".join(e.value for kind in (at.text, at.caption, at.markdown) for e in kind)


def test_a_store_without_runs_or_pairs_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    at = review_page(reviewer="ann")
    assert at.info[0].value.startswith("No eval runs to review") and "wb eval" in at.info[0].value
    assert not (tmp_path / "store").exists()
    store = Store(tmp_path / "store")  # two runs, of two suites: no pair
    for suite in ("one", "two"):
        with store.open_run("eval", {"checkpoint": {"name": "m"}, "suite": suite}) as run:
            run.write_samples("t", [{"id": "1", "messages": [], "output": "x", "scores": {}}])
    at = review_page(reviewer="ann")
    assert at.info[0].value.startswith("No pair to review")
    at.radio[0].set_value("rubric").run()
    assert not at.exception and at.info[0].value.startswith("No run to grade")


def test_a_name_comes_first(seeded):
    at = review_page()
    assert at.info[0].value.startswith("Give your name")
    assert not [b for b in at.button if b.label == "Tie"]


def test_pairwise_label_written_as_given_and_resumed(seeded):
    store, a, b = seeded
    pairs = items.pairwise_items(store.load(a), store.load(b), "explain", seed=0)
    at = review_page(reviewer="ann", a=a, b=b, task="explain")
    assert at.text[0].value == pairs[0]["prompt"]
    left, right = (e.value for e in at.text[2:4])  # prompt, reference, left answer, right answer
    assert [left, right] == pairs[0]["answers"]
    at.text_input[1].set_value("close call")
    next(x for x in at.button if x.label == "Right is better").click().run()
    [label] = read_labels(store).labels
    assert {k: label[k] for k in ("reviewer", "kind", "suite", "task", "item", "runs", "shown", "choice", "seed",
                                  "note")} == {
        "reviewer": "ann", "kind": "pairwise", "suite": "judge-demo", "task": "explain", "item": pairs[0]["item"],
        "runs": [a, b], "shown": sides(0, pairs[0]["item"], [a, b]), "choice": "right", "seed": 0,
        "note": "close call"}
    assert "Item 2 of 12" in texts(at)
    # a fresh session of ann resumes at item 2; ben starts at item 1 and sees nothing of ann's
    assert "Item 2 of 12" in texts(review_page(reviewer="ann", a=a, b=b, task="explain"))
    ben = review_page(reviewer="ben", a=a, b=b, task="explain")
    assert "Item 1 of 12" in texts(ben) and "close call" not in texts(ben) and not ben.table


def test_judge_verdict_only_after_own_label(seeded):
    store, a, b = seeded
    at = review_page(reviewer="ann", a=a, b=b, task="explain")
    assert not at.table  # nothing labelled: no verdict of the judge on the page
    next(x for x in at.button if x.label == "Tie").click().run()
    table = at.table[0].value
    first = items.pairwise_items(store.load(a), store.load(b), "explain", 0)[0]
    assert list(table.iloc[:, 0].str.replace("\\", "")) == [first["item"]]
    assert table.iloc[0, -1] == as_text(f"judge_pairwise: {first['judge']['judge_pairwise']}")  # shown as text


def test_agreement_shown_only_once_every_item_is_labelled(seeded):
    from workbench.review.stats import report_rows, review_stats

    store, a, b = seeded
    at = review_page(reviewer="ann", a=a, b=b, task="explain")
    for i in range(12):
        assert not any("Agreement so far" in h.value for h in at.subheader)
        next(x for x in at.button if x.label == ("Left is better", "Tie")[i % 2]).click().run()
    assert any("Agreement so far" in h.value for h in at.subheader)
    shown = at.table[0].value
    expected = report_rows(review_stats(store, [store.load(a), store.load(b)], "explain"))
    assert list(shown.iloc[:, 1].str.replace("\\", "")) == [as_text(r["what"]).replace("\\", "") for r in expected]
    assert "judge judge_pairwise vs people: Cohen's kappa (unweighted)" in [r["what"] for r in expected]


def test_rubric_grades_on_the_task_rubric_and_scale(seeded):
    store, _, b = seeded
    at = review_page(reviewer="ann", mode="rubric", run=b, task="explain")
    assert "5: correct and complete" in at.text[0].value  # the suite's rubric, as the run recorded it
    assert [x.label for x in at.button if x.label.isdigit()] == ["1", "2", "3", "4", "5"]
    next(x for x in at.button if x.label == "4").click().run()
    [label] = read_labels(store).labels
    assert (label["kind"], label["runs"], label["score"], label["scale"]) == ("rubric", [b], 4, [1, 5])


def test_human_verdicts_beside_the_judge_on_compare(seeded):
    store, a, b = seeded
    at = review_page(reviewer="ann", a=a, b=b, task="explain")
    first = items.pairwise_items(store.load(a), store.load(b), "explain", 0)[0]
    next(x for x in at.button if x.label == "Left is better").click().run()
    preferred = read_labels(store).labels[0]["preferred"]
    assert preferred == ("A" if first["shown"][0] == a else "B")
    verdicts = items.human_verdicts(read_labels(store).labels, a, b, "explain")
    assert verdicts == {first["item"]: {"pairwise": [f"ann: {preferred}"]}}
    cmp = AppTest.from_file(APP, default_timeout=60).run()
    cmp.switch_page("app_pages/compare.py")
    cmp.query_params.update(a=a, b=b)
    cmp.run()
    assert not cmp.exception
    table = cmp.dataframe[0].value
    assert table.set_index("id")["human labels"][first["item"]] == f"prefer: ann: {preferred}"


def test_review_suites_and_resume_at():
    runs = [{"run_id": str(i), "kind": "eval", "status": "ok", "suite": s} for i, s in enumerate("aab")]
    runs.append({"run_id": "x", "kind": "eval", "status": "failed", "suite": "b"})
    assert {s: [m["run_id"] for m in ms] for s, ms in items.review_suites(runs).items()} == {"a": ["0", "1"]}
    rows = [{"item": i} for i in ("p", "q", "r")]
    assert items.resume_at(rows, {"p": {}, "r": {}}) == 1 and items.resume_at(rows, {i: {} for i in "pqr"}) is None
