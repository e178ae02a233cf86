"""Community graph: threshold (or tolerance t) and k-hop sliders over a sample of the run's
instance embeddings, graph statistics, and one image's positive and negative peers."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from app.logic import figures, graphstats, launch
from app.logic.confusion import class_name
from app.ui import context, widgets

ctx = context.page("Community graph")
pred = ctx.pred
if pred.z is None or pred.probs is None:
    st.warning(
        "The community graph needs the instance embeddings z and the probabilities in predictions.npz."
    )
    st.stop()
view = context.data_view(ctx.config)
names = context.class_names_for(ctx, view)
n, num_clusters = len(pred), pred.num_clusters
mp = ctx.config.get("method_params") or {}
settings = graphstats.GraphSettings.of(mp)
run_t, neg_conf = settings.tolerance, settings.neg_conf


# ------------------------------------------------------------------ controls
c1, c2, c3 = st.columns([1, 1, 2])
sizes = sorted({s for s in (512, 1024, 2048, 4096) if s < n} | {min(n, graphstats.DEFAULT_SAMPLE), n})
size = c1.selectbox(
    "Sample size",
    sizes,
    index=sizes.index(min(n, graphstats.DEFAULT_SAMPLE)),
    format_func=lambda s: f"all {s:,}" if s == n else f"{s:,}",
    key="g_size",
)
mode = c2.radio(
    "Threshold from",
    ["tolerance t", "explicit threshold"],
    key="g_mode",
    help="UCCC's pos_conf = 1 - 2t/C (the paper's Table 1 values when t = 4)",
)
with c3:
    if mode == "tolerance t":
        t = st.slider(
            "Tolerance t",
            0.5,
            max(1.0, num_clusters / 2.0 - 0.25),
            min(run_t, num_clusters / 2.0 - 0.25),
            0.25,
            key="g_t",
        )
        explicit = None
    else:
        default_thr = settings.threshold(num_clusters)
        explicit = st.slider("Positive threshold", -0.5, 0.99, round(default_thr, 3), 0.005, key="g_thr")
        t = None
    k = st.slider("k-hop", 1, 4, settings.khop, key="g_k")

try:
    pos_conf = graphstats.resolve_threshold(num_clusters, t, explicit)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

sample = context.graph_sample(ctx.ref, int(size))
if sample is None:  # predictions rewritten between reads (a running run): next rerun has them
    st.info("The predictions are being rewritten; press Refresh.")
    st.stop()
t0 = time.perf_counter()
stats = graphstats.graph_stats(sample, pos_conf, k, neg_conf)
elapsed = time.perf_counter() - t0

# ------------------------------------------------------------------ statistics
m = st.columns(6)
m[0].metric("Positive threshold", f"{pos_conf:.3f}")
m[1].metric(
    "Peers per image", f"{stats.peers.mean():.1f}", help=f"median {np.median(stats.peers):.0f}; self excluded"
)
m[2].metric("With ≥ 1 peer", f"{stats.share_with_peer:.1%}")
m[3].metric("Negative peers", f"{stats.neg_peers.mean():.0f}", help=f"s_ij < {neg_conf:g}, mean per image")
m[4].metric(
    "Y_pos agrees with Y",
    f"{stats.agreement:.1%}",
    help="share with argmax(Y_pos) = argmax(Y): the fused k-hop community's cluster vs the image's own",
)
if stats.acc_own is not None:
    m[5].metric(
        "ACC of Y_pos",
        f"{stats.acc_community:.3f}",
        f"{stats.acc_community - stats.acc_own:+.3f} vs Y",
        help=f"Hungarian ACC on the sample; argmax(Y) has {stats.acc_own:.3f}",
    )
else:
    m[5].metric("ACC", "n/a", help="no labels")
st.caption(
    f"{len(sample):,} sampled images · hop sets from {stats.n_anchors} anchors · "
    f"recomputed in {elapsed * 1000:.0f} ms"
)

left, right = st.columns([2, 3])
with left:
    hop_rows = [
        {
            "hop": h + 1,
            "new peers / image": round(stats.hop_peers[h], 1),
            "precision (same label)": stats.hop_precision[h],
        }
        for h in range(k)
    ]
    st.dataframe(
        hop_rows,
        hide_index=True,
        column_config={"precision (same label)": st.column_config.NumberColumn(format="%.3f")},
    )
    if not pred.has_labels:
        st.caption("No labels: peer precision is not available.")
with right:
    st.plotly_chart(figures.histogram(stats.peers, "Positive peers per image", "peers"), key="g_hist")

# ------------------------------------------------------------------ one image's neighbourhood
st.subheader("An image's neighbourhood")
focus = int(st.session_state.get("focus_index", int(sample.positions[0])))
focus = min(max(focus, 0), n - 1)
c1, c2 = st.columns([1, 3])
with c1:
    picked = int(st.number_input("Image (position in the run)", 0, n - 1, focus, 1, key="g_focus_input"))
    if view.has_images:
        widgets.image_grid(view, np.array([picked]), pred.index, limit=1, size=128)
    lab = f" · label {class_name(names, int(pred.label[picked]))}" if pred.has_labels else ""
    st.caption(
        f"#{pred.index[picked]} · cluster {pred.cluster[picked]}{lab} · conf {pred.confidence[picked]:.2f}"
    )
with c2:
    with st.expander("Pick from a gallery (the least confident sampled images)"):
        candidates = sample.positions[np.argsort(pred.confidence[sample.positions])[:8]]
        cols = st.columns(8)
        for col, pos in zip(cols, candidates, strict=False):
            with col:
                if view.has_images:
                    widgets.image_grid(view, np.array([pos]), pred.index, limit=1, size=56)
                if st.button(f"#{pred.index[pos]}", key=f"g_pick_{pos}"):
                    st.session_state["focus_index"] = int(pos)
                    st.session_state.pop("g_focus_input", None)
                    st.rerun()
    hops, negatives = graphstats.peers_of(sample, pred.z[picked], pos_conf, k, neg_conf, exclude=picked)

    def caption(p: graphstats.Peer) -> str:
        lab = f" y={class_name(names, int(pred.label[p.position]))}" if pred.has_labels else ""
        return f"s={p.similarity:.2f}{lab} c={pred.cluster[p.position]}"

    def peer_grid(peers: list, empty: str) -> None:  # thumbnails, or captions for vector data
        if view.has_images:
            positions = np.array([p.position for p in peers], dtype=np.int64)
            widgets.image_grid(view, positions, pred.index, [caption(p) for p in peers], limit=12, empty=empty)
        else:
            st.write([caption(p) for p in peers] or empty)

    for h, peers in enumerate(hops, start=1):
        st.markdown(f"**Hop {h}** positive peers (most similar first)")
        peer_grid(peers, "none at this hop")
    st.markdown("**Strongest negative peers** (most negative similarity)")
    peer_grid(negatives, "no negative peers")
if not view.has_images:
    st.info(f"No thumbnails: {view.problem}")

# ------------------------------------------------------------------ try it for real
st.subheader("Train with these settings")
run_method = ctx.config.get("method") or "uccc"
target = launch.graph_method(run_method)
c1, c2 = st.columns([1, 3])
run_epochs = int(ctx.config.get("epochs") or 0)  # a --minutes run records a huge epoch cap
epochs = int(
    c1.number_input("Epochs", 1, 10_000, run_epochs if 0 < run_epochs <= 10_000 else 50, key="g_epochs")
)
params = (
    {"khop": int(k), "pos_conf": round(pos_conf, 4)} if t is None else {"khop": int(k), "tolerance": float(t)}
)
c2.caption(
    f"`{target}` on `{ctx.config.get('dataset', 'digits')}` with {params} and the rest of this run's config."
)
if not ctx.config:
    st.caption("This run has no config.json to start from.")
elif c2.button(
    f"Launch a {target} run with threshold {pos_conf:.3f} and k = {k}",
    icon=":material/rocket_launch:",
    key="g_launch",
):
    # The run's own parameters, except the graph ones chosen here (a tolerance from the slider
    # must not be overridden by an explicit pos_conf left in the run's config, and vice versa).
    base = (
        {k_: v for k_, v in mp.items() if k_ not in ("pos_conf", "tolerance", "khop")}
        if target == run_method
        else {}
    )
    req = launch.LaunchRequest(
        method=target,
        dataset=ctx.config.get("dataset") or "digits",
        root=ctx.config.get("root"),
        backbone=ctx.config.get("backbone"),
        epochs=epochs,
        batch_size=ctx.config.get("batch_size"),
        lr=ctx.config.get("lr"),
        seed=int(ctx.config.get("seed") or 0),
        threads=1,
        params={**base, **params},
    )
    run_id, pid = launch.launch(req, context.runs_folder())
    context.select_run(run_id)
    context.flash(f"Launched {run_id} (pid {pid}) with {params}.")
    st.switch_page("views/curves.py")
