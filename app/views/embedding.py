"""Embedding map: t-SNE / UMAP of z, h or probs; lasso or box selection shows and exports images."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import streamlit as st

from app.logic import density, map_figures, projection, selection
from app.logic.confusion import class_name
from app.logic.failures import mapped_labels
from app.logic.runsdir import cache_dir
from app.ui import context, widgets
from clustering.runs import PREDICTIONS_FILE

AUTO_COMPUTE_MAX = 2500  # small projections start by themselves; larger ones wait for a click
SOURCE_NAMES = {"z": "instance embeddings z", "h": "backbone features h", "probs": "cluster probabilities"}

ctx = context.page("Embedding map")
pred = ctx.pred
view = context.data_view(ctx.config)
names = context.class_names_for(ctx, view)
n = len(pred)

sources = [s for s in projection.SOURCES if pred.features(s) is not None]
if not sources:
    st.warning("predictions.npz holds no embeddings (z, h or probs) to project.")
    st.stop()
c1, c2, c3, c4, c5 = st.columns([1.2, 1.6, 1.2, 1.2, 1.2])
method = c1.radio(
    "Projection",
    ["tsne", "umap"],
    format_func={"tsne": "t-SNE", "umap": "UMAP"}.get,
    horizontal=True,
    key="map_method",
)
source = c2.selectbox("Of", sources, format_func=SOURCE_NAMES.get, key="map_source")
# The run's own map of every sample (written when it ended) when the knobs are the run's: then
# nothing is computed and the point count is all of them.
knobs = {k: st.session_state.get(f"map_{k}", projection.DEFAULTS[k]) for k in ("perplexity", "seed")}
knobs |= {"n_neighbors": st.session_state.get("map_neighbors", projection.DEFAULTS["n_neighbors"]),
          "min_dist": st.session_state.get("map_min_dist", projection.DEFAULTS["min_dist"])}  # fmt: skip
own_params = projection.ProjectionParams(method=method, source=source, subsample=None, **knobs)
own = projection.run_projection(ctx.ref.path, pred.step, own_params, n)
sizes = [s for s in (1000, 2000, 5000, 10000, 20000) if s < n] + [n]
subsample = c3.selectbox(
    "Points",
    sizes,
    index=len(sizes) - 1 if own is not None else sizes.index(min(sizes, key=lambda s: abs(s - 5000))),
    format_func=lambda s: f"all {s:,}" if s == n else f"{s:,} (subsample)",
    key="map_points",
    disabled=own is not None,
    help="the run's own map holds every point" if own is not None else None,
)
if own is not None:
    subsample = n
elif ctx.status.get("projections") == "computing":
    st.caption("The run is writing its own t-SNE and UMAP of every point now; they open here once written.")
color_options = (
    ["cluster", "label", "correct / wrong", "confidence"] if pred.has_labels else ["cluster", "confidence"]
)
color_by = c4.selectbox("Colour by", color_options, key="map_color")
with st.expander("Projection parameters"):
    a, b, c, d = st.columns(4)
    perplexity = a.number_input("t-SNE perplexity", 5.0, 100.0, 30.0, 5.0, key="map_perplexity")
    n_neighbors = b.number_input("UMAP neighbours", 2, 200, 15, 1, key="map_neighbors")
    min_dist = c.number_input("UMAP min_dist", 0.0, 1.0, 0.1, 0.05, key="map_min_dist")
    seed = d.number_input("Seed", 0, 10_000, 0, 1, key="map_seed")
params = projection.ProjectionParams(
    method=method,
    source=source,
    subsample=None if subsample >= n else int(subsample),
    seed=int(seed),
    perplexity=float(perplexity),
    n_neighbors=int(n_neighbors),
    min_dist=float(min_dist),
)
folder = cache_dir(ctx.ref, context.runs_folder())
fingerprint = projection.predictions_fingerprint(ctx.ref.path / PREDICTIONS_FILE)
key = projection.cache_key(fingerprint, params)
cached = own if own is not None else projection.load(folder, key)


def compute_with_progress() -> tuple[np.ndarray, np.ndarray]:
    """Run the projection in a worker thread and show elapsed time against a rough estimate
    (sklearn and umap offer no progress callback)."""
    label = "t-SNE" if method == "tsne" else "UMAP"
    estimate = max(3.0, subsample / (350.0 if method == "tsne" else 600.0))
    bar = st.progress(
        0.0, text=f"Computing {label} of {subsample:,} points (first time only; cached afterwards)…"
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        job = pool.submit(projection.load_or_compute, folder, fingerprint, pred.features(source), params)
        start = time.time()
        while not job.done():
            elapsed = time.time() - start
            bar.progress(
                min(0.95, elapsed / estimate),
                text=f"Computing {label} of {subsample:,} points… {elapsed:.0f} s",
            )
            time.sleep(0.25)
        positions, coords, _ = job.result()
    bar.empty()
    return positions, coords


if cached is None:
    if subsample <= AUTO_COMPUTE_MAX or st.button(
        f"Compute {method.upper()} of {subsample:,} points", type="primary", key="map_compute"
    ):
        cached = compute_with_progress()
    else:
        st.info(
            f"This projection has not been computed yet. It is computed once and then loaded from `{folder}`."
        )
        st.stop()
positions, coords = cached

mapping = pred.mapping
cl = pred.cluster[positions]
if pred.has_labels:
    lab = pred.label[positions]
values = None
if color_by == "cluster":
    groups, group_names = cl, {int(c): f"cluster {c}" for c in np.unique(cl)}
elif color_by == "label":
    groups, group_names = lab, {int(y): class_name(names, int(y)) for y in np.unique(lab)}
elif color_by == "correct / wrong":
    groups = (mapped_labels(pred.cluster, mapping)[positions] == lab).astype(int)
    group_names = {1: "correct", 0: "wrong"}
else:
    groups, group_names, values = None, {}, pred.confidence[positions]
label = "t-SNE" if method == "tsne" else "UMAP"
title = f"{label} of {SOURCE_NAMES[source]} · {len(positions):,} points"
if own is not None:
    title += " (the run's own map)"
draw = c5.radio(
    "Draw",
    ["points", "density"],
    index=int(len(positions) > density.DENSITY_ABOVE),
    horizontal=True,
    key="map_draw",
    help=f"density bins the map into one image (the default above {density.DENSITY_ABOVE:,} points, where a "
    "scatter of every point is slow to draw); a box or lasso still selects every point inside it",
)
if draw == "density":
    fig, hover_grid = map_figures.density_map(coords, groups, group_names, values, title + " · density")
    # A separate key: the two charts report their selections differently.
    event = st.plotly_chart(fig, key="map_density", on_select="rerun", selection_mode=("points", "box", "lasso"))
    boxes, lassos = selection.selection_shapes(event)
    clicked = [int(v[0]) for v in map(selection.custom_values, selection.selection_points(event)) if v]
    picked = density.selected_positions(coords, positions, boxes, lassos, np.asarray(clicked), hover_grid)
else:
    info = map_figures.point_info(positions, pred.index, pred.cluster, pred.confidence, pred.label)
    fig = map_figures.scatter_map(coords, info, groups, group_names, values, title, pred.has_labels)
    event = st.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=("points", "box", "lasso"))
    picked = selection.points_to_positions(selection.selection_points(event))
st.subheader("Selection")
if len(picked) == 0:
    st.caption(
        "Draw a lasso (or a box, from the toolbar) on the map to see the images and export their indices."
    )
else:
    df = selection.export_frame(picked, pred.index, pred.cluster, pred.confidence, pred.label, names)
    c1, c2, c3 = st.columns([2, 1, 1])
    c1.markdown(
        f"**{len(picked)}** selected · clusters: "
        + ", ".join(
            f"{c} ({k})" for c, k in zip(*np.unique(pred.cluster[picked], return_counts=True), strict=True)
        )
    )
    with c2:
        widgets.download_csv(df, f"{ctx.ref.run_id}-selection.csv", key="map_csv")
    if c3.button("Inspect in community graph", icon=":material/hub:", key="map_to_graph"):
        st.session_state["focus_index"] = int(picked[0])
        st.switch_page("views/graph.py")
    widgets.image_grid(
        view, picked, pred.index, [f"#{pred.index[p]} · c{pred.cluster[p]}" for p in picked], limit=64
    )
    st.dataframe(df, hide_index=True, height=240)
