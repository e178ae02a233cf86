"""Compare two runs: their clusters' contingency table (Hungarian-aligned), agreement, and the
images they put in different clusters, with which run is right where labels exist."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.logic import compare, figures
from app.logic.confusion import class_name
from app.ui import context, widgets
from clustering.runs import read_config

ctx = context.page("Compare runs")
pred_a = ctx.pred


def same_data(config: dict) -> bool:
    keys = ("dataset", "root", "split", "label_column")
    return all(config.get(k) == ctx.config.get(k) for k in keys)


others = []
for ref in context.all_runs():
    if ref.run_id == ctx.ref.run_id:
        continue
    config = read_config(ref.path) or {}
    if same_data(config):
        others.append(ref)
if not others:
    st.info(
        f"No other run on the same data ({ctx.config.get('dataset', '?')}, split "
        f"{ctx.config.get('split') or 'default'}) to compare with. Train one with another method or seed."
    )
    st.stop()

by_id = {r.run_id: r for r in others}
ticked = [r for r in st.session_state.get("compare", []) if r in by_id]
other_id = st.selectbox("Run B", list(by_id), index=list(by_id).index(ticked[0]) if ticked else 0, key="cmp_b",
                        format_func=lambda i: by_id[i].label)  # fmt: skip
ref_b = by_id[other_id]
pred_b = context.predictions(ref_b, read_config(ref_b.path) or {})
if pred_b is None:
    st.info(f"{other_id} has no predictions yet.")
    st.stop()
try:
    result = compare.compare_runs(pred_a.cluster, pred_b.cluster, pred_a.label if pred_a.has_labels else None)
except compare.IncomparableRuns as exc:
    st.warning(str(exc))
    st.stop()

st.caption(f"A = **{ctx.ref.run_id}** (the sidebar's run) · B = **{other_id}**")
a, b, c, d = st.columns(4)
a.metric("Agreement (aligned)", f"{result.agreement:.3f}")
b.metric("NMI between runs", f"{result.nmi:.3f}")
c.metric("ARI between runs", f"{result.ari:.3f}")
d.metric("Images in different clusters", f"{len(result.disagree):,}")

rows = [f"c{i}" for i in range(result.counts.shape[0])]
cols = [f"c{i}" for i in result.col_clusters]
st.plotly_chart(
    figures.contingency_heatmap(result.counts, rows, cols, "A's clusters against B's (B's columns matched to A's)"),
    key="cmp_heat",
)

verdicts = result.verdict_counts()
if verdicts:
    st.dataframe(pd.DataFrame([verdicts]), hide_index=True, key="cmp_verdicts")
    choice = st.radio("Show", ["all", *verdicts], horizontal=True, key="cmp_show")
    keep = {
        "all": np.ones(len(result.disagree), dtype=bool),
        "only A right": result.a_right & ~result.b_right,
        "only B right": ~result.a_right & result.b_right,
        "both right": result.a_right & result.b_right,
        "both wrong": ~result.a_right & ~result.b_right,
    }[choice]
    shown = result.disagree[keep]
else:
    st.caption("No labels: which run is right cannot be told.")
    shown = result.disagree

view = context.data_view(ctx.config)
names = context.class_names_for(ctx, view)


def caption(p: int) -> str:
    text = f"#{int(pred_a.index[p])} A:c{int(pred_a.cluster[p])} B:c{int(pred_b.cluster[p])}"
    return text + (f" ({class_name(names, int(pred_a.label[p]))})" if pred_a.has_labels else "")


page_size = 48
pages = max(1, -(-len(shown) // page_size))
page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="cmp_page") if pages > 1 else 1
chunk = shown[(page - 1) * page_size : page * page_size]
widgets.image_grid(view, chunk, pred_a.index, captions=[caption(int(p)) for p in chunk], limit=page_size,
                   empty="The two runs agree on every image.")  # fmt: skip
table = pd.DataFrame(
    {"index": pred_a.index[shown], "A cluster": pred_a.cluster[shown], "B cluster": pred_b.cluster[shown]}
)
if pred_a.has_labels:
    table["label"] = pred_a.label[shown]
    if result.a_right is not None:
        table["A right"], table["B right"] = result.a_right[keep], result.b_right[keep]
widgets.download_csv(table, f"{ctx.ref.run_id}-vs-{other_id}.csv", "Export the disputed images", key="cmp_csv")
