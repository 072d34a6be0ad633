"""Exports: what each quantized file costs (size) against what it loses (divergence from its source checkpoint)."""

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import store_cache
import streamlit as st
from page_parts import markdown_safe, no_data

from workbench.dashboard import views
from workbench.store.lineage import ckpt

# metric -> (axis title with unit, higher is better)
QUALITY = {
    "mean_kl": ("mean KL vs source (nats/token; lower = better)", False),
    "top1_agreement": ("top-1 agreement with source (fraction)", True),
    "same_greedy_answer": ("same greedy answer (fraction of prompts)", True),
    "perplexity": ("perplexity (lower = better)", False),
}

st.title("Exports")
st.caption("One point per exported file. Quality is measured by `wb export`'s verification: the file loaded in "
           "its runtime (llama.cpp for GGUF) against the checkpoint it was made from, on the same prompts.")
rows = store_cache.exports()
if rows.empty:
    no_data("exports", "`wb export CHECKPOINT --format gguf --quant q4_k_m,q8_0 -o DIR`")

sources = list(dict.fromkeys(rows["source"]))  # newest export first
chosen = st.multiselect("Source checkpoint", sources, default=sources[:3],
                        help="The three most recently exported checkpoints are shown at first.")
rows = rows[rows["source"].isin(chosen)]
available = [m for m in QUALITY if m in rows and rows[m].notna().any()]
if rows.empty or "size_mib" not in rows:
    st.info("No exported files match.")
    st.stop()
if not available:
    st.info("These exports were not verified (`--no-verify`), so there is no quality to plot; sizes are below.")
else:
    quality = st.radio("Quality measure", available, format_func=lambda m: m.replace("_", " "), horizontal=True)
    title, higher = QUALITY[quality]
    front = pd.DataFrame(views.pareto_front(rows.to_dict("records"), "size_mib", quality, higher))
    fig = px.scatter(rows, x="size_mib", y=quality, color="source", text="quant" if len(rows) <= 40 else None,
                     hover_data={"file": True, "quant": True, "run": True, "size_mib": ":.1f", quality: ":.4f"})
    fig.update_traces(textposition="top center", marker_size=11)
    if not front.empty:
        fig.add_trace(go.Scatter(x=front["size_mib"], y=front[quality], mode="lines", name="Pareto front",
                                 line=dict(dash="dash", color="grey"), hoverinfo="skip",
                                 line_shape="hv"))  # best quality within a size budget
    fig.update_layout(title=f"Size vs quality ({quality.replace('_', ' ')}); dashed: Pareto front", height=460,
                      xaxis_title="file size (MiB)", yaxis_title=title)
    st.plotly_chart(fig, width="stretch")

    divergence = [m for m in ("mean_kl", "perplexity") if m in available]
    for metric in divergence:
        per_quant = rows.dropna(subset=[metric])
        bar = px.bar(per_quant, x="quant", y=metric, color="source", barmode="group", hover_data=["file", "run"])
        bar.update_layout(title=f"{metric.replace('_', ' ')} per quant type", height=360,
                          xaxis_title="quant type", yaxis_title=QUALITY[metric][0])
        st.plotly_chart(bar, width="stretch")

st.subheader("Parity with the source (fp) model")
columns = {"quant": "quant", "size_mib": "size (MiB)", "mean_kl": "mean KL (nats/token)",
           "top1_agreement": "top-1 agreement", "same_greedy_answer": "same greedy answer", "prompts": "prompts",
           "perplexity": "perplexity", "file": "file", "source": "source", "run": "run"}
parity = rows[[c for c in columns if c in rows]].rename(columns=columns).sort_values("size (MiB)")
st.dataframe(parity, hide_index=True, width="stretch", column_config={
    c: st.column_config.NumberColumn(c, format="%.1f" if c == "size (MiB)" else "%.4f")
    for c in ("size (MiB)", "mean KL (nats/token)", "top-1 agreement", "same greedy answer", "perplexity")})

st.subheader("Evals of exported files against their source")
pairs = views.export_eval_parity(store_cache.manifests())
if not pairs:
    st.info("No eval of an exported file yet: `wb eval FILE.gguf --suite SUITE` (and the same suite on its source "
            "checkpoint) puts the two side by side here, metric by metric.")
    st.stop()
labels = [f"{views.checkpoint_label(ckpt(src))} → {views.checkpoint_label(ckpt(exp))} · "
          f"{exp.get('suite')}" for src, exp in pairs]
pick = st.selectbox(f"Exported file eval vs source eval ({len(pairs)}, newest first)", range(len(pairs)),
                    format_func=labels.__getitem__)
source, exported = pairs[pick]
data = store_cache.comparison(source["run_id"], exported["run_id"])
st.caption(f"`wb compare {source['run_id']} {exported['run_id']}`: A is the source checkpoint, B the exported file.")
st.table(markdown_safe(pd.DataFrame(data["cells"])), hide_index=True)
