"""Review: people label eval answers, blind. Pairwise: two runs of one suite, the answers side by side in an order
drawn per item (review.labels.sides); rubric: one run's answers graded on the task's judge rubric. Each label is
appended to the store as it is given (review.labels); a reviewer sees only their own labels, and the judge's
verdict on an item only after labelling it.

Keyboard: the choice buttons carry Streamlit's own shortcuts (st.button(shortcut=...), shown on each button; not
while typing in a field): 1 left, 2 right, 3 tie, 4 both bad; a rubric grade's digit (scales up to 9).
"""

import pandas as pd
import store_cache
import streamlit as st
from page_parts import RECORD_EVAL, markdown_safe, no_data, run_label

from workbench.dashboard.views import as_text
from workbench.errors import WorkbenchError
from workbench.review import items as review
from workbench.review.labels import read_labels
from workbench.review.stats import report_rows, review_stats

CHOICE_BUTTONS = {"left": ("Left is better", "1"), "right": ("Right is better", "2"), "tie": ("Tie", "3"),
                  "both_bad": ("Both bad", "4")}

st.title("Review")
manifests = [m for m in store_cache.manifests() if m["kind"] == "eval" and m["status"] == "ok"]
if not manifests:
    no_data("eval runs to review", RECORD_EVAL + ", once per checkpoint,")
by_id = {m["run_id"]: m for m in manifests}
query = st.query_params

if "review_name" not in st.session_state:
    st.session_state.review_name = query.get("reviewer", "")
name = st.text_input("Your name", value=st.session_state.review_name, max_chars=80,
                     help="Given once: kept in the page's address, so a reload resumes where you stopped.").strip()
st.session_state.review_name = name
if not name:
    st.info("Give your name to start: each label records who gave it.")
    st.stop()
query["reviewer"] = name

modes = ["pairwise (blind)", "rubric"]
mode = st.radio("Review", modes, horizontal=True, index=1 if query.get("mode") == "rubric" else 0)
query["mode"] = "rubric" if mode == "rubric" else "pairwise"


def pick(label: str, options: list, key: str, fmt=str, column=st):
    """A selectbox that opens on (and records) the page address's `key`."""
    wanted = query.get(key)
    index = options.index(wanted) if wanted in options else 0
    value = column.selectbox(label, options, index=index, format_func=fmt)
    query[key] = str(value)
    return value


def show_item(item: dict) -> None:
    st.markdown("**Prompt**")
    st.text(item["prompt"])
    if item["reference"] is not None:
        with st.expander("Reference answer"):
            st.text(str(item["reference"]))


def agreement(runs: list, task: str) -> None:
    """Every reviewer's agreement and the judge's, shown once this reviewer has labelled every item (before, it
    would show others' labels and the judge's verdicts on items still to label)."""
    rows = report_rows(review_stats(store, runs, task))
    st.subheader("Agreement so far (all reviewers)")
    st.caption("As `wb review stats` reports it (docs/review.md): 95% intervals are bootstrapped over items.")
    st.table(markdown_safe(pd.DataFrame(rows)), hide_index=True)


def give(record) -> None:
    """A button's callback: write the label before the page redraws on the next item."""
    try:
        record()
    except WorkbenchError as exc:
        st.session_state.review_error = str(exc)


if "review_error" in st.session_state:
    st.error(f"Label not saved: {as_text(st.session_state.pop('review_error'))}")
store = store_cache.store()

if mode == "pairwise (blind)":
    suites = review.review_suites(manifests)
    if not suites:
        st.info("No pair to review: a blind pairwise review needs two finished eval runs of one suite; "
                f"{RECORD_EVAL} records them.")
        st.stop()
    c1, c2, c3 = st.columns([1, 2, 2])
    suite = pick("Suite", sorted(suites), "suite", column=c1)
    ids = [m["run_id"] for m in suites[suite]]
    run_a = pick("A (baseline)", ids, "a", lambda i: run_label(by_id[i]), c2)
    run_b = pick("B (candidate)", [i for i in ids if i != run_a], "b", lambda i: run_label(by_id[i]), c3)
    a, b = store.load(run_a), store.load(run_b)
    tasks = review.suite_tasks([a, b])
    if not tasks:
        st.info("These runs recorded no per-sample answers of the suite's tasks in common.")
        st.stop()
    c1, c2 = st.columns([3, 1])
    task = pick("Task", tasks, "task", column=c1)
    seed = int(c2.number_input("Side order seed", 0, 2**31 - 1, int(query.get("seed", 0) or 0),
                               help="Draws which answer is shown on the left, per item; recorded in each label."))
    query["seed"] = str(seed)
    items = store_cache.pairwise_items(run_a, run_b, task, seed)
    mine = review.reviewed(read_labels(store).labels, reviewer=name, kind="pairwise", runs=[run_a, run_b], task=task)
    at = review.resume_at(items, mine)
    st.progress(len([i for i in items if i["item"] in mine]) / max(1, len(items)),
                text=f"{len([i for i in items if i['item'] in mine])} of {len(items)} items labelled by you")
    if at is None:
        st.success(f"You have labelled all {len(items)} items of this pair.")
        agreement([a, b], task)
    else:
        item = items[at]
        st.caption(f"Item {at + 1} of {len(items)} · id {as_text(item['item'])} · the runs' names are hidden and the "
                   "sides are drawn per item.")
        show_item(item)
        for col, side, answer in zip(st.columns(2), ("Left", "Right"), item["answers"]):
            with col.container(border=True, key=f"answer-{side.lower()}"):
                st.markdown(f"**{side} answer**")
                st.text(answer)
        note_key = f"note-{run_a}-{run_b}-{task}-{item['item']}"
        st.text_input("Note (optional)", key=note_key)
        for col, (choice, (text, key)) in zip(st.columns(4), CHOICE_BUTTONS.items()):
            col.button(text, shortcut=key, width="stretch", on_click=give, args=(
                lambda choice=choice: review.label_pair(
                    store, reviewer=name, a=a, b=b, task=task, item=item, choice=choice, seed=seed,
                    note=st.session_state.get(note_key, "")),))
    if mine:
        st.subheader("Your labels, with the judge's verdicts")
        st.caption("Only yours. The judge's verdict (judge_pairwise, where B was evaluated with A as its baseline) "
                   "shows for the items you have labelled.")
        by_item = {i["item"]: i for i in items}
        st.table(markdown_safe(pd.DataFrame([
            {"item": i, "you chose": lb["choice"], "you prefer": lb["preferred"], "note": lb.get("note") or "",
             "judge prefers": "; ".join(f"{k}: {v}" for k, v in by_item[i]["judge"].items()) or "-"}
            for i, lb in mine.items() if i in by_item])), hide_index=True)
else:
    graded = [m["run_id"] for m in manifests
              if any(review.rubric_scorers(m, t["name"]) for t in (m.get("config") or {}).get("tasks") or [])]
    if not graded:
        st.info("No run to grade: a rubric review needs an eval run of a suite whose task has a judge scorer "
                f"(with its rubric); {RECORD_EVAL} records one.")
        st.stop()
    c1, c2 = st.columns([2, 1])
    run_id = pick("Run", graded, "run", lambda i: run_label(by_id[i]), c1)
    run = store.load(run_id)
    tasks = [t for t in review.suite_tasks([run]) if review.rubric_scorers(run.manifest, t)]
    if not tasks:
        st.info("This run recorded no per-sample answers of a task with a judge scorer.")
        st.stop()
    task = pick("Task", tasks, "task", column=c2)
    scorers = {s["label"]: s for s in review.rubric_scorers(run.manifest, task)}
    scorer = scorers[pick("Judge rubric", list(scorers), "scorer")] if len(scorers) > 1 else next(iter(scorers.values()))
    lo, hi = scorer["scale"]
    with st.container(border=True):
        st.markdown(f"**Rubric** (grades {lo} to {hi}: the scale of the judge scorer {as_text(scorer['label'])})")
        st.text(scorer["rubric"])
    items = store_cache.rubric_items(run_id, task, scorer["label"])
    mine = review.reviewed(read_labels(store).labels, reviewer=name, kind="rubric", runs=[run_id], task=task)
    at = review.resume_at(items, mine)
    done = len([i for i in items if i["item"] in mine])
    st.progress(done / max(1, len(items)), text=f"{done} of {len(items)} items graded by you")
    if at is None:
        st.success(f"You have graded all {len(items)} answers of this run.")
        agreement([run], task)
    else:
        item = items[at]
        st.caption(f"Item {at + 1} of {len(items)} · id {as_text(item['item'])}")
        show_item(item)
        with st.container(border=True):
            st.markdown("**Answer**")
            st.text(item["answer"])
        note_key = f"note-{run_id}-{task}-{item['item']}"
        st.text_input("Note (optional)", key=note_key)
        for col, grade in zip(st.columns(hi - lo + 1), range(lo, hi + 1)):
            key = str(grade) if hi <= 9 and grade >= 0 else None
            col.button(str(grade), shortcut=key, width="stretch", on_click=give, args=(
                lambda grade=grade: review.label_rubric(
                    store, reviewer=name, run=run, task=task, item=item["item"], score=grade, scale=[lo, hi],
                    note=st.session_state.get(note_key, "")),))
    if mine:
        st.subheader("Your grades, with the judge's")
        st.caption("Only yours. The judge's grade shows for the answers you have graded.")
        by_item = {i["item"]: i for i in items}
        st.table(markdown_safe(pd.DataFrame([
            {"item": i, "your grade": lb["score"], "note": lb.get("note") or "",
             "judge": (by_item[i]["judge"] or {}).get("score", (by_item[i]["judge"] or {}).get("error", "-"))}
            for i, lb in mine.items() if i in by_item])), hide_index=True)
