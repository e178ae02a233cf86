"""Confusion matrix: Hungarian-aligned, counts or row-normalised; a cell shows its images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.logic import confusion, figures, selection
from app.ui import context, widgets

ctx = context.page("Confusion matrix")
pred = ctx.pred
view = context.data_view(ctx.config)
names = context.class_names_for(ctx, view)

if not pred.has_labels:
    st.info("This run's data set has no labels, so there is no confusion matrix. Cluster sizes instead:")
    st.dataframe(confusion.sizes_table(pred.cluster, pred.confidence, pred.num_clusters), hide_index=True)
    st.stop()

conf = confusion.aligned_confusion(pred.label, pred.cluster, pred.num_clusters, pred.mapping)
col_labels = [confusion.class_name(names, int(c)) for c in conf.col_classes]
row_labels = [
    f"c{c} → {confusion.class_name(names, conf.mapping[int(c)])}"
    if int(c) in conf.mapping
    else f"c{c} (unmapped)"
    for c in conf.row_clusters
]

c1, c2 = st.columns([2, 3])
mode = c1.radio("Show", ["counts", "row-normalised"], horizontal=True, key="cm_mode")
c2.metric(
    "ACC (Hungarian)",
    f"{conf.accuracy:.3f}",
    help="share of samples on the diagonal; same mapping as the trainer's ACC",
)
normalized = mode == "row-normalised"
values = conf.normalized() if normalized else conf.counts

left, right = st.columns([3, 2])
with left:
    large = values.size > figures.CONFUSION_TEXT_CELLS
    st.caption(
        "Click a cell (or box-select cells) to see the images behind it."
        + (f" At this size the {figures.CONFUSION_CLICK_CELLS:,} largest cells take clicks; pick any other cell below."
           if large else "")
    )  # fmt: skip
    event = st.plotly_chart(
        figures.confusion_figure(values, row_labels, col_labels, normalized),
        key="cm_chart",
        on_select="rerun",
        selection_mode=("points", "box"),
    )
with right:
    st.markdown("**Hungarian mapping** (cluster → class)")
    st.dataframe(confusion.mapping_table(conf, names), hide_index=True, height=220)
    st.markdown("**Per cluster**")
    st.dataframe(
        confusion.cluster_table(conf, names),
        hide_index=True,
        height=260,
        column_config={
            "precision": st.column_config.NumberColumn(format="%.3f"),
            "purity": st.column_config.NumberColumn(format="%.3f"),
        },
    )

cells = selection.selected_cells(selection.selection_points(event))
confused = confusion.top_confused_cells(conf, 20)
if confused:
    st.markdown("**Most confused cells** (off the diagonal; pick a row to see its images)")
    picked_row = st.dataframe(
        pd.DataFrame(
            [{"cluster": row_labels[r], "true class": col_labels[c], "images": k} for r, c, k in confused]
        ),
        hide_index=True,
        height=220,
        on_select="rerun",
        selection_mode="single-row",
        key="cm_confused",
    )
    chosen = picked_row.selection.rows if picked_row is not None else []
    if chosen and not cells:
        cells = [confused[chosen[0]][:2]]
st.subheader("Images behind a cell")
if not cells:
    c1, c2 = st.columns(2)
    row = c1.selectbox(
        "Cluster row", range(len(row_labels)), format_func=lambda r: row_labels[r], key="cm_row"
    )
    col = c2.selectbox(
        "True class", range(len(col_labels)), format_func=lambda c: col_labels[c], key="cm_col"
    )
    cells = [(row, col)]
positions = np.unique(
    np.concatenate(
        [
            confusion.cell_indices(
                pred.cluster, pred.label, int(conf.row_clusters[r]), int(conf.col_classes[c])
            )
            for r, c in cells
        ]
    )
)
positions = positions[np.argsort(-pred.confidence[positions], kind="stable")]
desc = ", ".join(f"{row_labels[r]} × {col_labels[c]}" for r, c in cells[:4]) + (
    " …" if len(cells) > 4 else ""
)
st.markdown(f"{desc}: **{len(positions)}** images, most confident first")
widgets.image_grid(
    view,
    positions,
    pred.index,
    [f"#{pred.index[p]} · {pred.confidence[p]:.2f}" for p in positions],
    limit=64,
    empty="This cell is empty.",
)
widgets.download_csv(
    selection.export_frame(positions, pred.index, pred.cluster, pred.confidence, pred.label, names),
    f"{ctx.ref.run_id}-cell.csv",
    key="cm_csv",
)
