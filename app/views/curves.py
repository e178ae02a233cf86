"""Training curves: losses by part, confidence, JSD, ACC/NMI/ARI, non-empty clusters and cluster
sizes over time, live while a run is running, overlaid for several runs."""

from __future__ import annotations

import time

import streamlit as st

from app.logic import curves, figures, runsdir
from app.ui import context
from clustering.runs import read_status

POLL_SECONDS = 2.0

context.page("Training curves", needs_run=False)
refs = context.all_runs()
by_id = {r.run_id: r for r in refs}
selected = context.selected_run()
pending = {p["run_id"] for p in runsdir.pending_launches(context.runs_folder()) if p.get("alive")}
options = list(dict.fromkeys([*(sorted(pending)), *by_id]))
if selected is not None and selected.run_id not in options:
    options.insert(0, selected.run_id)
if not options:
    st.info("No runs yet. Launch one on the **Runs** page.")
    st.stop()

default = [r for r in st.session_state.get("compare", []) if r in options] or (
    [selected.run_id] if selected is not None else options[:1]
)
chosen = st.multiselect(
    "Runs to show (overlay)",
    options,
    default=default,
    key="curve_runs",
    help="e.g. UCCC against CC without its entropy term",
)
c1, c2 = st.columns([2, 3])
x_axis = c1.radio("x axis", ["epoch", "step", "minutes"], horizontal=True, key="curve_x")
sizes_for = c2.selectbox("Cluster sizes of", chosen or options[:1], key="curve_sizes_run")


def ref_of(run_id: str) -> runsdir.RunRef:
    return by_id.get(run_id) or runsdir.RunRef(run_id, context.runs_folder() / run_id)


def live(run_ids: list[str]) -> bool:
    """Any shown run still training (or just launched): then the charts poll."""
    for run_id in run_ids:
        if run_id in pending:
            return True
        state = (read_status(ref_of(run_id).path) or {}).get("state")
        if state in context.LIVE_STATES:
            return True
    return False


polling = live(chosen)


@st.fragment(run_every=POLL_SECONDS if polling else None)
def charts() -> None:
    # Only this fragment reruns while polling: no full-page rerun, the rest of the page stays put,
    # and the charts keep their keys (and zoom, via uirevision) so they update in place.
    frames, rows_by_run, statuses = [], {}, {}
    for run_id in chosen:
        ref = ref_of(run_id)
        rows = context.metrics(ref)
        rows_by_run[run_id] = rows
        statuses[run_id] = read_status(ref.path) or {}
        frames.append(curves.metrics_frame(rows, run_id))

    show_status(statuses)
    if not any(rows_by_run.values()):
        st.info("No evaluations logged yet: the first point appears after the first epoch.")
    else:
        plot(frames, rows_by_run)

    # The runs ended while we were polling: one full rerun redraws the page without run_every,
    # which stops the polling.
    if polling and not live(chosen):
        st.rerun(scope="app")


def show_status(statuses: dict[str, dict]) -> None:
    """A progress bar per live run; a note for runs still starting and for failed ones."""
    for run_id, status in statuses.items():
        state = status.get("state")
        if state in context.LIVE_STATES:
            epoch = status.get("epoch", 0) or 0
            progress = float(status.get("epoch_progress") or 0.0)
            beat = time.time() - float(status.get("heartbeat") or time.time())
            st.progress(
                min(1.0, max(0.0, progress)),
                text=f"{run_id}: epoch {epoch + 1}, step {status.get('step', 0)} · "
                f"heartbeat {beat:.0f} s ago",
            )
        elif not status and run_id in pending:
            st.info(f"{run_id} is starting (loading data and model)…")
        elif state == "failed":
            st.error(f"{run_id} failed: {status.get('error', '')}")


def plot(frames: list, rows_by_run: dict[str, list[dict]]) -> None:
    """Loss parts, confidence, JSD, ACC/NMI/ARI, non-empty clusters and cluster sizes."""
    parts = sorted(
        {p for rows in rows_by_run.values() for p in curves.loss_parts(rows)},
        key=lambda k: (k != "loss", k),
    )
    st.plotly_chart(
        figures.line_chart(curves.long_frame(frames, parts, x_axis), x_axis, "Loss by part"),
        key="fig_loss",
    )
    single = [("confidence", "Confidence (mean max probability)", "fig_conf"),
              ("jsd", "JSD of cluster sizes vs labels (bits)", "fig_jsd")]  # fmt: skip
    for column, (key, title, chart_key) in zip(st.columns(2), single, strict=True):
        with column:
            st.plotly_chart(figures.line_chart(curves.long_frame(frames, [key], x_axis), x_axis, title), key=chart_key)
    a, b = st.columns(2)
    with a:
        quality = curves.long_frame(frames, list(curves.QUALITY_KEYS), x_axis)
        if quality.empty:
            st.info("No ACC/NMI/ARI: the data set has no labels.")
        else:
            st.plotly_chart(figures.line_chart(quality, x_axis, "ACC / NMI / ARI"), key="fig_quality")
    with b:
        st.plotly_chart(
            figures.line_chart(
                curves.long_frame(frames, ["n_nonempty"], x_axis), x_axis, "Non-empty clusters"
            ),
            key="fig_nonempty",
        )
    size_rows = rows_by_run.get(sizes_for, [])
    x, sizes = curves.sizes_matrix(size_rows)
    if sizes.size:
        note = curves.degeneracy_note(size_rows)
        if note:
            st.warning(f"Degeneracy: {note}.")
        st.plotly_chart(
            figures.sizes_chart(x, sizes, f"Cluster sizes over time: {sizes_for}"), key="fig_sizes"
        )


if not chosen:
    st.info("Pick at least one run.")
else:
    charts()
