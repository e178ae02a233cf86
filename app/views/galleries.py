"""Cluster galleries and failure cases (misassigned images, or the model's doubts without labels)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.logic import failures, graphstats, selection
from app.logic.confusion import class_name
from app.ui import context, widgets

PAGE = 64

ctx = context.page("Galleries & failure cases")
pred = ctx.pred
view = context.data_view(ctx.config)
names = context.class_names_for(ctx, view)
if not view.has_images:
    st.info(f"No thumbnails: {view.problem}. Tables and exports below still work.")
mapping = pred.mapping
lo, hi = st.slider("Confidence range", 0.0, 1.0, (0.0, 1.0), 0.01, key="gal_conf")


def export(positions: np.ndarray, name: str, key: str) -> None:
    df = selection.export_frame(positions, pred.index, pred.cluster, pred.confidence, pred.label, names)
    widgets.download_csv(df, f"{ctx.ref.run_id}-{name}.csv", key=key)


sizes = np.bincount(pred.cluster, minlength=pred.num_clusters)  # once: 200 options x 100k samples otherwise


def cluster_title(c: int) -> str:
    size = int(sizes[c])
    mapped = (
        f" → {class_name(names, mapping[c])}" if c in mapping else (" (unmapped)" if pred.has_labels else "")
    )
    return f"cluster {c}{mapped} · {size} images"


tab_clusters, tab_fail = st.tabs(["Clusters", "Failure cases"])
with tab_clusters:
    nonempty = [int(c) for c in np.unique(pred.cluster)]
    c1, c2 = st.columns([2, 1])
    cluster = c1.selectbox("Cluster", nonempty, format_func=cluster_title, key="gal_cluster")
    members = failures.cluster_members(pred.cluster, pred.confidence, cluster, (lo, hi))
    pages = max(1, (len(members) + PAGE - 1) // PAGE)
    page = int(c2.number_input(f"Page (of {pages})", 1, pages, 1, key="gal_page")) - 1
    shown = members[page * PAGE : (page + 1) * PAGE]
    st.markdown(f"**{len(members)}** images in range, most confident first")
    caps = []
    for p in shown:
        wrong = pred.has_labels and mapping.get(cluster) != int(pred.label[p])
        lab = f" y={class_name(names, int(pred.label[p]))}" if pred.has_labels else ""
        caps.append(f"{'✗ ' if wrong else ''}{pred.confidence[p]:.2f}{lab}")
    widgets.image_grid(view, shown, pred.index, caps, limit=PAGE, empty="No images in this confidence range.")
    export(members, f"cluster-{cluster}", "gal_cluster_csv")

with tab_fail:
    if pred.has_labels:
        fails = failures.failure_indices(pred.cluster, pred.label, mapping)
        st.markdown(
            f"**{len(fails)}** of {len(pred)} images ({len(fails) / len(pred):.1%}) carry a label other than "
            "their cluster's mapped class."
        )
        st.markdown("**Most confused pairs**")
        st.dataframe(
            failures.confused_pairs(pred.cluster, pred.label, mapping, names),
            hide_index=True,
            column_config={"share of class": st.column_config.NumberColumn(format="%.1%%")},
        )
        by_class = failures.failures_by_class(pred.cluster, pred.label, pred.confidence, mapping, (lo, hi))
        if not by_class:
            st.success("No failures in this confidence range.")
        else:
            cls = st.selectbox(
                "True class",
                list(by_class),
                key="fail_class",
                format_func=lambda c: f"{class_name(names, c)} · {len(by_class[c])} misassigned",
            )
            idx = by_class[cls]
            caps = [
                f"→c{pred.cluster[p]}"
                + (
                    f" ({class_name(names, mapping[int(pred.cluster[p])])})"
                    if int(pred.cluster[p]) in mapping
                    else ""
                )
                + f" {pred.confidence[p]:.2f}"
                for p in idx
            ]
            st.caption("Most confident mistakes first: they show what the model is sure about and wrong.")
            widgets.image_grid(view, idx, pred.index, caps, limit=PAGE)
            export(idx, f"failures-{cls}", "fail_class_csv")
        export(fails, "failures-all", "fail_all_csv")
    else:
        st.markdown("No labels: the failure view shows what the model itself doubts.")
        c1, c2 = st.columns(2)
        count = int(c1.number_input("Least confident images", 8, 512, 48, 8, key="fail_low_n"))
        low = failures.low_confidence(pred.confidence, count)
        low = low[(pred.confidence[low] >= lo) & (pred.confidence[low] <= hi)]
        st.markdown("**Lowest confidence**")
        widgets.image_grid(
            view, low, pred.index, [f"c{pred.cluster[p]} {pred.confidence[p]:.2f}" for p in low], limit=count
        )
        export(low, "low-confidence", "fail_low_csv")
        if pred.z is not None and pred.probs is not None:
            settings = graphstats.GraphSettings.of(ctx.config.get("method_params"))
            try:
                thr = settings.threshold(pred.num_clusters)
            except ValueError as exc:
                st.warning(f"No community view: {exc}")
                st.stop()
            k = settings.khop
            sample = context.graph_sample(ctx.ref, graphstats.DEFAULT_SAMPLE)
            if sample is None:
                st.stop()
            positions = sample.positions
            stats = graphstats.graph_stats(sample, thr, k)
            dis = failures.community_disagreements(stats.own, stats.community, positions)
            dis = dis[(pred.confidence[dis] >= lo) & (pred.confidence[dis] <= hi)]
            st.markdown(
                f"**Community disagrees** ({len(dis)} of {len(positions)} sampled images: argmax of the "
                f"{k}-hop positive community ≠ own cluster, threshold {thr:.3f})"
            )
            comm = dict(zip(positions.tolist(), stats.community.tolist(), strict=True))
            widgets.image_grid(
                view,
                dis,
                pred.index,
                [f"c{pred.cluster[p]}→{comm[int(p)]} {pred.confidence[p]:.2f}" for p in dis],
                limit=PAGE,
            )
            export(dis, "community-disagreements", "fail_comm_csv")
