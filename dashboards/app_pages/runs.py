"""Run detail: the run list (paged) and one run's manifest, settings, versions, timings and metrics."""

import math

import pandas as pd
import plotly.express as px
import store_cache
import streamlit as st
from page_parts import RECORD_EVAL, no_data

from workbench.dashboard.views import as_text

PAGE_SIZE = 50
SETTING_KEYS = ("suite", "suite_sha", "limit", "seed", "chat_template_sha", "format", "quants", "config_path")

st.title("Run detail")
runs = store_cache.runs()
if runs.empty:
    no_data("runs", f"{RECORD_EVAL} (or `wb train`, `wb merge`, `wb export`)")

left, right = st.columns(2)
kinds = left.multiselect("Kind", sorted(runs["kind"].unique()))
statuses = right.multiselect("Status", sorted(runs["status"].unique()))
shown = runs
if kinds:
    shown = shown[shown["kind"].isin(kinds)]
if statuses:
    shown = shown[shown["status"].isin(statuses)]
if shown.empty:
    st.info("No runs match these filters.")
    st.stop()

pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
page = st.number_input(f"Page (of {pages}, {PAGE_SIZE} runs each, newest first)", 1, pages, 1) if pages > 1 else 1
st.dataframe(shown.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE], hide_index=True, width="stretch")

ids = list(shown["run"])
wanted = st.query_params.get("run")
run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0)
st.query_params["run"] = run_id
detail = store_cache.run(run_id)
m, metrics = detail["manifest"], detail["metrics"]

st.subheader(f"{as_text(m['kind'])} run `{run_id}`")
c1, c2 = st.columns([1, 3])
c1.metric("status", as_text(m["status"]))
c2.metric("checkpoint", as_text((m.get("checkpoint") or {}).get("name") or "-"))
st.caption(f"created {m['created_at']} · finished {m.get('finished_at') or '-'} (UTC)")
if m.get("command"):
    st.code(m["command"], language="bash")
if m.get("error"):
    st.error(as_text(m["error"]))

tab_settings, tab_metrics, tab_versions, tab_timings, tab_manifest = st.tabs(
    ["Settings", "Metrics", "Versions", "Timings", "Manifest"])
with tab_settings:
    settings = {k: m[k] for k in SETTING_KEYS if m.get(k) is not None}
    st.dataframe(pd.DataFrame([{"setting": k, "value": str(v)} for k, v in settings.items()]), hide_index=True,
                 width="stretch")
    if m.get("checkpoint"):
        st.markdown("**Checkpoint (with lineage)**")
        st.json(m["checkpoint"], expanded=1)
    for i, h in enumerate(m.get("harness") or []):
        st.markdown(f"**lm-eval settings [{i}]**: {as_text(', '.join(h.get('tasks') or []))}")
        st.json(h.get("settings") or {}, expanded=False)
    if m.get("config"):
        st.markdown("**Resolved config**")
        st.json(m["config"], expanded=False)
    if m.get("hardware"):
        st.markdown("**Hardware**")
        st.json(m["hardware"], expanded=False)
with tab_metrics:
    if metrics:
        st.dataframe(pd.DataFrame(metrics), hide_index=True, width="stretch")
    else:
        st.info("This run recorded no metrics.")
    if detail["sample_files"]:
        st.caption("Per-sample files: " + ", ".join(f"`samples/{s}.jsonl`" for s in detail["sample_files"]))
with tab_versions:
    versions = m.get("versions") or {}
    if versions:
        st.dataframe(pd.DataFrame([{"package": k, "version": v} for k, v in versions.items()]), hide_index=True,
                     width="stretch")
    else:
        st.info("This run recorded no versions.")
with tab_timings:
    timings = {k: v for k, v in (m.get("timings") or {}).items() if isinstance(v, (int, float))}
    if timings:
        fig = px.bar(x=list(timings), y=list(timings.values()), labels={"x": "step", "y": "wall time (s)"},
                     title="Wall time per step")
        fig.update_layout(height=340, xaxis_title="step", yaxis_title="wall time (s)")
        st.plotly_chart(fig, width="stretch")
    else:
        st.info("This run recorded no timings.")
with tab_manifest:
    st.json(m, expanded=False)
