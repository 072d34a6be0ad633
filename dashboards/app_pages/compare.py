"""Compare two eval or replay runs (or two checkpoints' latest runs): per-metric deltas and a per-sample drill-down.

The table is compare_runs() formatted as `wb compare` prints it; the drill-down is compare.sample_diffs().
"""

import math

import pandas as pd
import plotly.graph_objects as go
import store_cache
import streamlit as st
from page_parts import RECORD_EVAL, markdown_safe, no_data, run_label

from workbench.compare.runs import Z_95
from workbench.dashboard import views
from workbench.errors import BadInput
from workbench.review import items as review_items
from workbench.review.labels import read_labels
from workbench.store.lineage import checkpoint_key, ckpt

PAGE_SIZE = 10

st.title("Compare")
evals = views.comparable_runs(store_cache.manifests())
if len(evals) < 2:
    no_data("pair of finished eval runs to compare", RECORD_EVAL + ", once per checkpoint,")
by_id = {m["run_id"]: m for m in evals}
ids = list(by_id)


def resolve(ref: str | None) -> str | None:
    if not ref:
        return None
    try:
        run_id = store_cache.store().resolve(ref).run_id
    except BadInput as exc:
        st.error(f"URL parameter: {views.as_text(exc)}")
        return None
    return run_id if run_id in by_id else None


def default_pair() -> tuple[str, str]:
    """B: the newest eval run; A: the newest run of another checkpoint on the same suite (else the next run)."""
    b = by_id[ids[0]]
    for m in evals[1:]:
        same_suite = m.get("suite") == b.get("suite")
        if same_suite and checkpoint_key(ckpt(m)) != checkpoint_key(ckpt(b)):
            return m["run_id"], b["run_id"]
    return ids[1], ids[0]


wanted_a, wanted_b = resolve(st.query_params.get("a")), resolve(st.query_params.get("b"))
default_a, default_b = default_pair()
mode = st.radio("Compare", ["two runs", "two checkpoints (latest run of each)"], horizontal=True)
left, right = st.columns(2)
if mode == "two runs":
    label = lambda run_id: run_label(by_id[run_id])  # noqa: E731
    run_a = left.selectbox("A (baseline)", ids, index=ids.index(wanted_a or default_a), format_func=label)
    run_b = right.selectbox("B (candidate)", ids, index=ids.index(wanted_b or default_b), format_func=label)
else:
    latest = views.latest_per_checkpoint(evals)
    suites = sorted({m.get("suite") or "-" for m in latest})
    suite = st.selectbox("Suite", suites, index=suites.index(by_id[default_b].get("suite") or "-"))
    options = {views.checkpoint_label(ckpt(m)): m["run_id"] for m in latest if (m.get("suite") or "-") == suite}
    labels = list(options)
    first = {v: k for k, v in options.items()}
    run_a = options[left.selectbox("Checkpoint A (baseline)", labels,
                                   index=labels.index(first.get(default_a, labels[min(1, len(labels) - 1)])))]
    run_b = options[right.selectbox("Checkpoint B (candidate)", labels,
                                    index=labels.index(first.get(default_b, labels[0])))]
st.query_params.update({"a": run_a, "b": run_b})
if run_a == run_b:
    st.warning("A and B are the same run: every delta is zero.")

data = store_cache.comparison(run_a, run_b)
cmp = data["comparison"]
st.subheader(f"{views.as_text(cmp['checkpoint_a'])} (A) → {views.as_text(cmp['checkpoint_b'])} (B)")
st.caption(f"A: run `{run_a}` · B: run `{run_b}` · Δ = B − A. The same numbers as "
           f"`wb compare {run_a} {run_b} --json`.")
if cmp["setting_differences"]:
    st.warning("These runs' settings differ, so their scores are not directly comparable: "
               + views.as_text("; ".join(cmp["setting_differences"])))

directions = data["directions"]
c1, c2, c3 = st.columns(3)
c1.metric("metrics better in B", directions.count("better"))
c2.metric("metrics worse in B", directions.count("worse"))
c3.metric("metrics unchanged", directions.count("same"))

table = pd.DataFrame(data["cells"])
table["verdict"] = [str(data["verdicts"].get((r["task"], r["metric"]), "-")) for r in cmp["rows"]]
st.caption("'B better/worse' counts paired samples where B scored higher / lower than A; the verdict is the gates' "
           "paired significance test (McNemar for pass/fail scores, a paired bootstrap otherwise).")
colours = {"better": "color: #1a7f37", "worse": "color: #cf222e"}
table = markdown_safe(table)
st.table(table.style.apply(lambda col: [colours.get(d, "") for d in directions], subset=[table.columns[5]]),
         hide_index=True)

plotted = [r for r in cmp["rows"] if r["a"] is not None and r["b"] is not None]
if plotted:
    names = [f"{r['task']} / {r['metric']}" for r in plotted]
    fig = go.Figure()
    for side, label in (("a", f"A: {cmp['checkpoint_a']}"), ("b", f"B: {cmp['checkpoint_b']}")):
        errors = [Z_95 * r[f"stderr_{side}"] if r[f"stderr_{side}"] is not None else math.nan for r in plotted]
        fig.add_trace(go.Bar(name=label, x=names, y=[r[side] for r in plotted],
                             error_y=dict(type="data", array=errors)))
    fig.update_layout(barmode="group", height=420, title="A and B per metric (error bars: 95% confidence interval)",
                      xaxis_title="task / metric", yaxis_title="value (metric's own unit; scores are 0-1)")
    st.plotly_chart(fig, width="stretch")

st.subheader("Per-sample drill-down")
tasks = data["sample_tasks"]
if not tasks:
    st.info("These runs recorded no per-sample files in common (task evals and lm-eval write them).")
    st.stop()
c1, c2, c3 = st.columns([2, 2, 1])
task = c1.selectbox("Task", tasks, help="lm-eval.<task>: the harness's own per-document records.")
rows = store_cache.diffs(run_a, run_b, task)
metrics = sorted({m for r in rows for m in r["scores_b"]})
metric = c2.selectbox("Judge regressions by", ["any metric"] + metrics)
regressions_only = c3.toggle("Regressions only", value=False)


def on_metric(names: list[str]) -> list[str]:
    return names if metric == "any metric" else [m for m in names if m == metric]


n_worse = sum(bool(on_metric(r["worse"])) for r in rows)
n_better = sum(bool(on_metric(r["better"])) for r in rows)
st.caption(f"{len(rows)} items scored by both runs: B better on {n_better}, worse on {n_worse} ({views.as_text(metric)}).")
shown = [r for r in rows if on_metric(r["worse"])] if regressions_only else rows
if not shown:
    st.info("No regressions: B is never worse than A here." if regressions_only else "No paired items.")
    st.stop()

pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
page = st.number_input(f"Page (of {pages}, {PAGE_SIZE} items each)", 1, pages, 1) if pages > 1 else 1
page_rows = shown[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]


def scores_text(scores: dict) -> str:
    return " · ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in scores.items())


humans = review_items.human_verdicts(read_labels(store_cache.store()).labels, run_a, run_b, task)


def humans_text(item: str) -> str:
    said = humans.get(item) or {}
    parts = [f"{what}: {', '.join(said[key])}" for key, what in
             (("pairwise", "prefer"), ("A", "A graded"), ("B", "B graded")) if said.get(key)]
    return "; ".join(parts) or "-"


table_rows = [{"id": r["id"], "worse in B": ", ".join(r["worse"]), "better in B": ", ".join(r["better"]),
               "A scores": scores_text(r["scores_a"]), "B scores": scores_text(r["scores_b"])} for r in page_rows]
if humans:  # the Review page's labels of these runs, beside the judge's scores
    for row in table_rows:
        row["human labels"] = humans_text(row["id"])
st.dataframe(pd.DataFrame(table_rows), hide_index=True, width="stretch")


def tag(r: dict) -> str:
    if r["worse"]:
        return f"worse: {', '.join(r['worse'])}"
    return f"better: {', '.join(r['better'])}" if r["better"] else "unchanged"


# One item in full at a time: ten open-able panels of prompts and outputs cost the browser more to draw than the
# rest of the page together.
by_item = {r["id"]: r for r in page_rows}
item = st.selectbox("Item", list(by_item), format_func=lambda i: f"{i} — {tag(by_item[i])}",
                    help="The items on this page; the table above lists them with their scores.")
r = by_item[item]
with st.container(border=True):
    # st.text, not st.code: plain preformatted text renders much faster than highlighted blocks
    st.markdown("**Prompt**")
    st.text(r["prompt"] or "")
    if r["reference"] is not None:
        st.markdown("**Reference**")
        st.text(str(r["reference"]))
    for col, side, name in zip(st.columns(2), ("a", "b"), (cmp["checkpoint_a"], cmp["checkpoint_b"])):
        col.markdown(f"**{side.upper()}: {views.as_text(name)}**")
        col.text(str(r[side]))
        col.caption("scores: " + views.as_text(scores_text(r[f"scores_{side}"])))
        if r[f"judge_{side}"]:
            col.markdown("**Judge verdict and rationale**")
            col.json(r[f"judge_{side}"])
    if humans.get(item):
        st.markdown("**Human labels** (Review page; A and B as above)")
        st.text(humans_text(item))
