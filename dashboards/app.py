"""ckpt-workbench dashboard: runs in the store and their metrics.

Reads the store only through workbench.store and workbench.compare, so it shows the CLI's numbers.
"""

import os
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from workbench.home import store_dir
from workbench.store import Store

st.set_page_config(page_title="ckpt-workbench", layout="wide")
STORE = Store(store_dir(os.environ.get("WB_STORE")))


@st.cache_data(ttl=10)
def load_runs(root: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    store = Store(Path(root))
    manifests = store.list_runs()
    runs = pd.DataFrame([{
        "run": m["run_id"], "kind": m["kind"], "status": m["status"], "checkpoint": (m.get("checkpoint") or {}).get("name"),
        "checkpoint kind": (m.get("checkpoint") or {}).get("kind"), "suite": m.get("suite"), "created": m["created_at"],
    } for m in manifests])
    rows = []
    for m in manifests:
        if m["kind"] != "eval" or m["status"] != "ok":
            continue
        for metric in store.load(m["run_id"]).metrics:
            rows.append({"run": m["run_id"], "checkpoint": (m.get("checkpoint") or {}).get("name"), **metric})
    return runs, pd.DataFrame(rows)


st.title("ckpt-workbench")
st.caption(f"store: {STORE.root}")
runs, metrics = load_runs(str(STORE.root))
if runs.empty:
    st.info("No runs yet. Record one with `wb eval default --suite contacts`.")
    st.stop()

st.subheader("Runs")
st.dataframe(runs, hide_index=True, use_container_width=True)

st.subheader("Metrics by run")
if metrics.empty:
    st.info("No finished eval runs yet.")
    st.stop()
tasks = sorted(metrics["task"].unique())
task = st.selectbox("task", tasks, index=tasks.index("contacts") if "contacts" in tasks else 0)
shown = metrics[metrics["task"] == task].copy()
shown["label"] = shown["checkpoint"] + " · " + shown["run"].str[-6:]
fig = px.bar(shown, x="metric", y="value", color="label", barmode="group", error_y="stderr",
             labels={"value": "score (fraction of samples, 0-1)", "metric": "metric", "label": "checkpoint · run"},
             title=f"{task}: metric per run (error bars: standard error)")
fig.update_yaxes(range=[0, 1])
st.plotly_chart(fig, use_container_width=True)
st.dataframe(shown[["run", "checkpoint", "metric", "value", "stderr", "n"]], hide_index=True, use_container_width=True)
