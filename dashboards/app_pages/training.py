"""Training curves: the loss (and learning rate) each `wb train` run logged."""

import plotly.express as px
import streamlit as st

import store_cache
from page_parts import no_data, run_label

st.title("Training curves")
train = [m for m in store_cache.manifests() if m["kind"] == "train"]
if not train:
    no_data("training runs", "`wb train RECIPE.yaml -o DIR` (e.g. `wb train contacts-lora -o adapters/contacts`)")
labels = {m["run_id"]: f"{run_label(m)} ({m['status']})" for m in train}
chosen = st.multiselect("Training runs", list(labels), default=list(labels)[:5], format_func=labels.get)
if not chosen:
    st.info("Pick one or more training runs.")
    st.stop()
curves = store_cache.curves(chosen)
if curves.empty or "loss" not in curves:
    st.info("These runs logged no losses yet (the log is written when training finishes).")
    st.stop()

fig = px.line(curves, x="step", y="loss", color="label", markers=True, hover_data=["elapsed_s"])
fig.update_layout(title="Training loss", height=420, xaxis_title="optimizer step",
                  yaxis_title="training loss (cross-entropy, nats/token)", legend_title_text="run")
st.plotly_chart(fig, width="stretch")
if "learning_rate" in curves:
    lr = px.line(curves, x="step", y="learning_rate", color="label")
    lr.update_layout(title="Learning rate schedule", height=300, xaxis_title="optimizer step",
                     yaxis_title="learning rate", legend_title_text="run")
    st.plotly_chart(lr, width="stretch")
missing = sorted(set(chosen) - set(curves["run"]))
if missing:
    st.caption("No loss log in: " + ", ".join(missing))
st.dataframe(curves, hide_index=True, width="stretch")
