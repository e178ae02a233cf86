"""Run story: how the clusters formed. Sizes over time, churn, the flow of images between two
evaluations (Sankey) and each image's history (when it settled, how often it flipped)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.logic import curves, figures, story
from app.logic.confusion import class_name
from app.ui import context, widgets

ctx = context.page("Run story")
pred = ctx.pred
history = context.history(ctx.ref)
num_clusters = int(ctx.config.get("num_clusters") or pred.num_clusters)

if history is None or len(history) < 2:
    st.info(
        "This run has no history of its evaluations (history.bin: runs trained before it existed, or "
        "fewer than two evaluations so far), so flows and per-image histories cannot be drawn. "
        "Cluster sizes over time come from metrics.jsonl."
    )
    x, sizes = curves.sizes_matrix(context.metrics(ctx.ref))
    if sizes.size:
        st.plotly_chart(figures.sizes_heatmap(x, sizes, "Cluster sizes over time"), key="story_sizes")
    st.stop()

samples = context.sample_history(ctx.ref)
sizes = story.sizes_over_time(history, num_clusters)
churn = story.churn(history)
settled = story.settled_curve(samples, len(history))
epochs = history.epochs

half = int(np.searchsorted(settled, 0.9))
a, b, c, d = st.columns(4)
a.metric("Evaluations", len(history))
b.metric("Non-empty at the end", f"{int(np.sum(sizes[-1] > 0))} of {num_clusters}")
c.metric("Changed cluster at the last evaluation", f"{churn[-1]:.1%}")
d.metric("90% of images settled by", f"epoch {int(epochs[min(half, len(epochs) - 1)])}",
         help="the evaluation from which 90% of images never changed cluster again")  # fmt: skip

st.plotly_chart(figures.sizes_heatmap(epochs, sizes, "Cluster sizes over time"), key="story_sizes")
trend = pd.concat(
    [
        pd.DataFrame({"epoch": epochs[1:], "value": churn, "series": "changed cluster since the last evaluation"}),
        pd.DataFrame({"epoch": epochs, "value": settled, "series": "in their final cluster for good"}),
    ]
).assign(run=ctx.ref.run_id)
st.plotly_chart(figures.line_chart(trend, "epoch", "Share of images", height=280), key="story_churn")

# ---------------------------------------------------------------- flow between two evaluations
st.subheader("Flow between two evaluations")
view = context.data_view(ctx.config)
names = context.class_names_for(ctx, view)
labels = pred.label if pred.has_labels and len(pred) == history.num_samples else None
eval_labels = [f"epoch {int(e)}" for e in epochs]
busiest = int(np.argmax(churn))  # the step with the most movement: where the story is
start, end = st.select_slider(
    "From / to evaluation",
    options=list(range(len(history))),
    value=(busiest, busiest + 1),
    format_func=lambda i: eval_labels[i],
    key="story_range",
)
if start == end:
    st.info("Pick two different evaluations.")
else:
    max_links = st.slider("Largest links shown", 10, 300, 80, 10, key="story_links")
    moved = story.flow(history, start, end, max_links)

    def node_names(e: int) -> dict[int, str]:
        majority = story.cluster_majority(np.asarray(history.cluster[e], dtype=np.int64), labels, moved.counts.shape[0])
        return {
            cl: f"c{cl}" + (f" ({class_name(names, m)})" if m is not None and names else "")
            for cl, m in enumerate(majority)
        }

    st.plotly_chart(
        figures.sankey(moved.links, node_names(start), node_names(end),
                       f"{eval_labels[start]} → {eval_labels[end]}: {moved.stayed:.1%} of images kept their cluster"),
        key="story_sankey",
    )  # fmt: skip
    if moved.links.attrs.get("other"):
        st.caption(f"{moved.links.attrs['other']:,} images move along smaller links, not drawn.")

# ---------------------------------------------------------------- per-image history
st.subheader("Image histories")
left, right = st.columns([1, 1])
with left:
    st.plotly_chart(figures.histogram(samples.flips, "Cluster changes per image", "changes"), key="story_flips")
with right:
    st.plotly_chart(
        figures.histogram(epochs[samples.settled_eval], "Epoch from which each image stayed put", "epoch"),
        key="story_settled",
    )
count = st.slider("Most unstable images", 8, 96, 24, 8, key="story_unstable")
unstable = story.most_unstable(samples, count)
widgets.image_grid(
    view,
    unstable,
    pred.index,
    captions=[f"#{int(pred.index[p])}: {int(samples.flips[p])} changes" for p in unstable],
    limit=count,
)
table = pd.DataFrame(
    {
        "index": pred.index[unstable],
        "changes": samples.flips[unstable],
        "settled at epoch": epochs[samples.settled_eval[unstable]],
        "final cluster": samples.final_cluster[unstable],
        "mean confidence": samples.mean_confidence[unstable].round(3),
    }
)
if labels is not None:
    table["label"] = [class_name(names, int(v)) for v in labels[unstable]]
st.dataframe(table, hide_index=True, key="story_table")
focus = st.number_input(
    "Image index", 0, history.num_samples - 1, int(pred.index[unstable[0]]) if len(unstable) else 0, key="story_focus"
)
position = int(np.flatnonzero(pred.index == focus)[0]) if np.any(pred.index == focus) else int(focus)
st.plotly_chart(figures.trajectory_chart(story.trajectory(history, position), f"Image #{focus}"), key="story_traj")
