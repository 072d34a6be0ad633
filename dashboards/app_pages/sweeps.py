"""Sweeps: one `wb sweep`'s leaderboard (its checkpoints × suites) and its units: status, where each ran, attempts."""

import pandas as pd
import plotly.graph_objects as go
import store_cache
import streamlit as st
from page_parts import no_data

from workbench.dashboard.views import as_text

st.title("Sweeps")
sweeps = [m for m in store_cache.manifests() if m["kind"] == "sweep"]
if not sweeps:
    no_data("sweeps", "`wb sweep SWEEP.yaml` (`--local`, or `--ray ADDRESS` for a Ray cluster)")


def label(m: dict) -> str:
    units = m.get("units") or []
    ok = sum(u.get("status") == "ok" for u in units)
    return f"{m['run_id']} · {ok}/{len(units)} units ok · {m['status']}"


by_label = {label(m): m for m in sweeps}
chosen = by_label[st.selectbox("Sweep", list(by_label))]
executor = chosen.get("executor") or {}
if executor.get("ray"):
    alive = sum(n.get("alive", False) for n in executor.get("nodes") or [])
    st.caption(f"Ray cluster {as_text(executor['ray'])} ({alive} nodes at the start), max_retries "
               f"{executor.get('max_retries')}; file {as_text(chosen.get('sweep_file'))}")
else:
    st.caption(f"In one process (--local); file {as_text(chosen.get('sweep_file'))}")

columns, rows = store_cache.sweep_leaderboard(chosen["run_id"])
if rows:
    table = pd.DataFrame(rows)[["checkpoint", *columns, "units_ok", "units_failed"]]
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.4f") for c in columns})
if columns:
    metric = st.selectbox("Chart", columns)
    shown = [r for r in rows if r.get(metric) is not None]
    fig = go.Figure(go.Bar(y=[r["checkpoint"] for r in shown], x=[r[metric] for r in shown], orientation="h"))
    fig.update_layout(title=metric, yaxis=dict(autorange="reversed"), height=160 + 26 * len(shown))
    st.plotly_chart(fig, width="stretch")

st.subheader("Units")
units = pd.DataFrame(chosen.get("units") or [])
wanted = [c for c in ("unit", "status", "attempts", "where", "seconds", "run_id", "error") if c in units]
st.dataframe(units[wanted], hide_index=True, width="stretch")
failed = units[units["status"] != "ok"] if "status" in units else units.iloc[0:0]
if len(failed):
    st.warning(f"{len(failed)} of {len(units)} units failed; the error of each is in the table.")
