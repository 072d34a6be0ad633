"""Training: the loss (and learning rate) each `wb train` run logged, and the evals it ran while training
(eval_during_training): task metrics and the lm-eval regression slice against the optimizer step."""

import plotly.express as px
import store_cache
import streamlit as st
from page_parts import no_data, run_label

from workbench.dashboard.views import as_text

st.title("Training")
train = [m for m in store_cache.manifests() if m["kind"] == "train"]
if not train:
    no_data("training runs", "`wb train RECIPE.yaml -o DIR` (e.g. `wb train contacts-lora -o adapters/contacts`)")
labels = {m["run_id"]: f"{run_label(m)} ({m['status']})" for m in train}
chosen = st.multiselect("Training runs", list(labels), default=list(labels)[:5], format_func=labels.get)
if not chosen:
    st.info("Pick one or more training runs.")
    st.stop()
curves = store_cache.curves(chosen)
loss_col, eval_col = st.columns(2)
with loss_col:
    if curves.empty or "loss" not in curves:
        st.info("These runs logged no losses yet (the log is written when training finishes).")
    else:
        fig = px.line(curves, x="step", y="loss", color="label", markers=True, hover_data=["elapsed_s"])
        fig.update_layout(title="Training loss", height=420, xaxis_title="optimizer step",
                          yaxis_title="training loss (cross-entropy, nats/token)", legend_title_text="run")
        st.plotly_chart(fig, width="stretch")

# Evals during training: one training run at a time (each has its own suite and base measurement).
with_evals = [r for r in chosen if (next(m for m in train if m["run_id"] == r).get("eval_during_training"))]
with eval_col:
    if not with_evals:
        st.info("These runs made no evals while training: add `eval_during_training: {suite: NAME, every_steps: N}` "
                "to the recipe to evaluate the adapter as it trains.")
    else:
        shown = st.selectbox("Evals during training of", with_evals, format_func=labels.get)
        evals = store_cache.training_evals(shown)
        recorded = next(m for m in train if m["run_id"] == shown)["eval_during_training"]
        if evals.empty:
            st.info("This training run has recorded no eval runs yet.")
        else:
            task = evals[evals["kind"] == "task"]
            if not task.empty:
                fig = px.line(task, x="step", y="value", color="series", markers=True, hover_data=["n", "run"])
                fig.update_layout(title=f"Task metrics · suite {recorded['suite']} (step 0: the base)", height=420,
                                  xaxis_title="optimizer step", yaxis_title="score", legend_title_text="task/metric")
                st.plotly_chart(fig, width="stretch")
        stopped = recorded.get("stopped_early")
        if stopped:
            st.warning(f"Stopped early at step {stopped['step']} of {stopped['max_steps']}: forgetting gate "
                       f"'{as_text(stopped['gate'])}' failed: {as_text(stopped['reason'])}")
if with_evals and not evals.empty:
    regression = evals[evals["kind"] != "task"]
    if not regression.empty:
        fig = px.line(regression, x="step", y="value", color="series", markers=True, error_y="stderr",
                      hover_data=["n", "run"])
        fig.update_layout(title="Regression slice (lm-eval) against step (step 0: the base)", height=420,
                          xaxis_title="optimizer step", yaxis_title="score", legend_title_text="task/metric")
        st.plotly_chart(fig, width="stretch")
    st.dataframe(evals.drop(columns=["series"]), hide_index=True, width="stretch")

if "learning_rate" in curves:
    lr = px.line(curves, x="step", y="learning_rate", color="label")
    lr.update_layout(title="Learning rate schedule", height=300, xaxis_title="optimizer step",
                     yaxis_title="learning rate", legend_title_text="run")
    st.plotly_chart(lr, width="stretch")
missing = sorted(set(chosen) - set(curves["run"])) if not curves.empty else chosen
if missing:
    st.caption("No loss log in: " + as_text(", ".join(missing)))
if not curves.empty:
    st.dataframe(curves, hide_index=True, width="stretch")
