"""Lineage: which checkpoint was made from which (base → adapter → merged → exports), from the runs' manifests."""

import pandas as pd
import plotly.graph_objects as go
import store_cache
import streamlit as st
from page_parts import RECORD_EVAL, no_data

from workbench.dashboard import views
from workbench.store.lineage import checkpoint_key, ckpt

COLOURS = {"source": "#8c959f", "base": "#0969da", "adapter": "#8250df", "merged": "#bf8700", "quantized": "#1a7f37"}
MAX_NODES = 60  # above this many checkpoints the page opens on one family

st.title("Lineage")
st.caption("Checkpoints every run names, joined by the lineage each records (parent sha). Left to right: what "
           "each was made from.")
nodes, edges = store_cache.lineage()
if not nodes:
    no_data("checkpoints", f"`wb train`, {RECORD_EVAL}, `wb merge` and `wb export`")


def root_of(key: str, parents: dict) -> str:
    seen = set()
    while parents.get(key) and key not in seen:
        seen.add(key)
        key = parents[key][0]
    return key


parents: dict[str, list[str]] = {}
for src, dst, _ in edges:
    parents.setdefault(dst, []).append(src)
roots = {k: root_of(k, parents) for k in nodes}
families = sorted({nodes[r]["name"] or r[:12] for r in roots.values()})
default = 0
if len(nodes) > MAX_NODES:  # everything at once is unreadable: start with the newest run's family
    newest = next((m for m in store_cache.manifests() if m.get("checkpoint")), None)
    key = checkpoint_key(ckpt(newest)) if newest else None
    if key in roots:
        default = 1 + families.index(nodes[roots[key]]["name"] or roots[key][:12])
family = st.selectbox("Family (root checkpoint)", ["all"] + families, index=default)
keep = {k for k, r in roots.items() if family == "all" or (nodes[r]["name"] or r[:12]) == family}

fig = go.Figure()
shown_edges = [(s, d, how) for s, d, how in edges if s in keep and d in keep]
place = views.lineage_layout({k: nodes[k] for k in keep}, shown_edges)
# Edges as one line trace; each arrowhead is a marker 80% of the way along its edge, turned to point along it
# (one trace draws in milliseconds where hundreds of plotly annotations take a second or more).
xs, ys, sizes = [], [], []
for s, d, _ in shown_edges:
    (x0, y0), (x1, y1) = (place[s][0], -place[s][1]), (place[d][0], -place[d][1])
    xs += [x0, x0 + 0.8 * (x1 - x0), x1, None]
    ys += [y0, y0 + 0.8 * (y1 - y0), y1, None]
    sizes += [0, 11, 0, 0]
fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", line=dict(color="#afb8c1", width=1.5),
                         marker=dict(symbol="arrow", angleref="previous", size=sizes, color="#8c959f"),
                         hoverinfo="skip", showlegend=False))
# How each checkpoint was made: on hover at the middle of its arrow (labels on the chart would collide).
fig.add_trace(go.Scatter(
    x=[(place[s][0] + place[d][0]) / 2 for s, d, _ in shown_edges],
    y=[-(place[s][1] + place[d][1]) / 2 for s, d, _ in shown_edges], mode="markers", showlegend=False,
    marker=dict(size=8, color="#d0d7de", symbol="diamond"), hovertemplate="%{text}<extra></extra>",
    text=[f"{nodes[s]['name']} → {nodes[d]['name']}<br>{how or 'made from'}" for s, d, how in shown_edges]))
for kind in sorted({nodes[k]["kind"] or "source" for k in keep}):
    members = [k for k in keep if (nodes[k]["kind"] or "source") == kind]
    fig.add_trace(go.Scatter(
        x=[place[k][0] for k in members], y=[-place[k][1] for k in members], mode="markers+text", name=kind,
        text=[nodes[k]["name"] or k[:12] for k in members],
        textposition=["bottom center" if place[k][0] % 2 == 0 else "top center" for k in members],
        marker=dict(size=18, color=COLOURS.get(kind, "#57606a"), line=dict(width=1, color="white")),
        customdata=[[nodes[k]["format"] or "-", (nodes[k]["sha"] or "-")[:12], len(nodes[k]["runs"])] for k in members],
        hovertemplate="%{text}<br>format %{customdata[0]}<br>sha %{customdata[1]}<br>runs %{customdata[2]}"
                      "<extra>" + kind + "</extra>"))
depth = max((place[k][0] for k in keep), default=0)
height = max((place[k][1] for k in keep), default=0)
fig.update_layout(height=max(360, (90 if height < 12 else 45) * (height + 1)),
                  title="Checkpoint lineage (arrows: made from; hover a diamond for how)",
                  xaxis=dict(title="lineage step (0 = root; each arrow one train / merge / export step)",
                             tickmode="linear", dtick=1, range=[-0.9, depth + 0.9]),
                  yaxis=dict(title="checkpoints at this step", showticklabels=False, zeroline=False,
                             range=[-height - 0.7, 0.7]),
                  legend_title_text="checkpoint kind")
st.plotly_chart(fig, width="stretch")

table = pd.DataFrame([{"checkpoint": nodes[k]["name"], "kind": nodes[k]["kind"], "format": nodes[k]["format"],
                       "sha": (nodes[k]["sha"] or "")[:12],
                       "made from": ", ".join(nodes[p]["name"] or p[:12] for p in parents.get(k, [])),
                       "runs": len(nodes[k]["runs"]), "path": nodes[k]["path"]} for k in sorted(keep, key=place.get)])
st.dataframe(table, hide_index=True, width="stretch")
