"""Leaderboard: each checkpoint's latest finished eval run per suite, metrics with 95% confidence intervals."""

import plotly.graph_objects as go
import store_cache
import streamlit as st
from page_parts import RECORD_EVAL, no_data

from workbench.dashboard import views

st.title("Leaderboard")
st.caption("Each checkpoint's newest finished eval run per suite. Intervals: value ± 1.96 · stderr (95%, normal "
           "approximation), from the stderr the eval recorded.")

rows = store_cache.leaderboard()
if rows.empty:
    no_data("eval runs", RECORD_EVAL)

left, mid, right = st.columns(3)
suites = sorted(rows["suite"].dropna().unique())
newest = views.latest_suite(store_cache.manifests())  # the suite of the newest eval run
suite = left.selectbox("Suite", ["all suites"] + suites, index=1 + suites.index(newest) if newest in suites else 0)
bases = sorted(rows["base"].dropna().unique())
base = mid.selectbox("Base model", ["all base models"] + bases)
sources = sorted(rows["source"].dropna().unique())
source = right.multiselect("Metric source", sources, default=sources,
                           help="task: the suite's own scorers; lm-eval: the regression slice through "
                                "lm-evaluation-harness.")
shown = rows
if suite != "all suites":
    shown = shown[shown["suite"] == suite]
if base != "all base models":
    shown = shown[shown["base"] == base]
if sources:
    shown = shown[shown["source"].isin(source) | shown["source"].isna()]
if shown.empty:
    st.info("No metrics match these filters.")
    st.stop()

columns = list(dict.fromkeys(shown["column"]))
left, right = st.columns([3, 1])
first = views.default_sort_column(shown.to_dict("records"), None if suite == "all suites" else suite)
sort_by = left.selectbox("Sort by", columns, index=columns.index(first) if first in columns else 0)
higher = shown.loc[shown["column"] == sort_by, "higher_is_better"].dropna()
best_first = right.toggle("Best first", value=True,
                          help="By the metric's direction (" + ("higher" if higher.empty or higher.iloc[0] else "lower")
                          + " is better).")

index = ["checkpoint", "suite", "checkpoint kind", "base", "run"]
keyed = shown.fillna({c: "-" for c in index}).assign(half=(shown["ci_high"] - shown["ci_low"]) / 2)
keyed = keyed.set_index(index + ["column"])
wide, half = keyed["value"].unstack("column"), keyed["half"].unstack("column")
table = wide[[]].copy()
for col in columns:
    table[col] = wide[col]
    if col in half and half[col].notna().any():
        table[f"{col} ±95%"] = half[col]
table = table.reset_index()
ascending = not best_first if higher.empty or bool(higher.iloc[0]) else best_first
table = table.sort_values(sort_by, ascending=ascending, na_position="last", kind="stable")
st.dataframe(table, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(c, format="%.4f") for c in table.columns
                            if c not in index})
st.caption(f"{len(table)} checkpoint runs × {len(columns)} metrics. Click a column header to sort by it.")

TOP = 30  # bars in the chart; the table holds every row
order = {run: i for i, run in enumerate(table["run"])}  # the chart in the table's order
chosen = shown[shown["column"] == sort_by].sort_values("run", key=lambda runs: runs.map(order)).head(TOP)
label = chosen["checkpoint"] + (" · " + chosen["suite"] if suite == "all suites" else "")
fig = go.Figure(go.Bar(
    y=label, x=chosen["value"], orientation="h",
    error_x=dict(type="data", symmetric=False, array=chosen["ci_high"] - chosen["value"],
                 arrayminus=chosen["value"] - chosen["ci_low"]),
    customdata=chosen[["run", "n"]],
    hovertemplate="%{y}<br>value %{x:.4f}<br>n %{customdata[1]}<br>run %{customdata[0]}"))
fig.update_layout(title=f"{sort_by} per checkpoint (error bars: 95% confidence interval)",
                  yaxis=dict(title="checkpoint", autorange="reversed"), height=160 + 26 * len(chosen),
                  xaxis_title=f"{chosen['metric'].iloc[0]} (mean over n samples)", margin=dict(t=70))
st.plotly_chart(fig, width="stretch")
if len(table) > TOP:
    st.caption(f"The chart shows the first {TOP} of {len(table)} rows in the table's order; filter to narrow it.")
