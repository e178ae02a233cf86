"""Shared page context: the runs folder, the selected run and cached readers of its files.

Session state is kept minimal: ``runs_folder``, ``run_id`` (the sidebar's pick), ``compare``
(runs ticked in the runs table) and ``focus_index`` (an image picked on one page to inspect on
another). Everything else is read from the run directories on each rerun, through caches keyed
by file size and mtime so a page switch costs no re-parsing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from app.logic import graphstats, launch, runsdir, story
from app.logic.graphstats import GraphSample
from app.logic.images import DataView, load_data_view
from app.logic.predictions import Predictions, from_arrays
from app.logic.runsdir import RunRef
from clustering.history import HISTORY_FILE, RunHistory, read_history
from clustering.runs import PREDICTIONS_FILE, read_config, read_metrics, read_predictions, read_status

LIVE_STATES = ("created", "running")


def runs_folder() -> Path:
    # A blank value (a cleared text box) falls back to the default rather than to the working
    # directory, which would scatter caches and logs into wherever the studio was started.
    if not str(st.session_state.get("runs_folder") or "").strip():
        st.session_state["runs_folder"] = str(runsdir.resolve_runs_folder(sys.argv[1:]))
    return Path(st.session_state["runs_folder"].strip()).expanduser().absolute()


def all_runs() -> list[RunRef]:
    """Listed afresh on every rerun: runs copied into the folder appear without a restart."""
    return runsdir.discover_runs(runs_folder())


def selected_run() -> RunRef | None:
    """The sidebar's run; a just-launched run whose directory does not exist yet is returned
    too (pages then show "starting")."""
    run_id = st.session_state.get("run_id")
    refs = all_runs()
    for ref in refs:
        if ref.run_id == run_id:
            return ref
    if run_id and any(p["run_id"] == run_id for p in runsdir.pending_launches(runs_folder())):
        return RunRef(run_id, runs_folder() / run_id)
    return refs[0] if refs else None


def select_run(run_id: str | None) -> None:
    """Make ``run_id`` the sidebar's run from the next rerun on (a widget's value cannot be
    changed once it is drawn in the current run, so the sidebar applies it first thing)."""
    st.session_state["_next_run_id"] = run_id or ""


def flash(message: str) -> None:
    """A message shown once on the next rerun (survives st.rerun / st.switch_page)."""
    st.session_state["_flash"] = message


def show_flash() -> None:
    message = st.session_state.pop("_flash", None)
    if message:
        st.success(message)


def sidebar() -> None:
    """Runs folder and run picker, drawn by app/main.py on every page."""
    if "_next_run_id" in st.session_state:
        st.session_state["run_id"] = st.session_state.pop("_next_run_id") or None
    runs_folder()  # initialise the folder's session value before its text input is drawn
    launch.reap()
    with st.sidebar:
        st.text_input(
            "Runs folder",
            key="runs_folder",
            help="Also settable with $CLUSTER_STUDIO_RUNS or `streamlit run app/main.py -- --runs PATH`. "
            "Runs copied into it appear on the next refresh.",
        )
        refs = all_runs()
        pending = [p["run_id"] for p in runsdir.pending_launches(runs_folder()) if p.get("alive")]
        ids = pending + [r.run_id for r in refs if r.run_id not in pending]
        if not ids:
            st.info("No runs yet: launch one on the Runs page.")
            return
        labels = {r.run_id: r.label for r in refs} | {p: f"{p} (starting)" for p in pending}
        current = st.session_state.get("run_id")
        if current not in ids:
            st.session_state["run_id"] = refs[0].run_id if refs else ids[0]
        st.selectbox("Run", ids, key="run_id", format_func=lambda i: labels.get(i, i))
        st.button("Refresh", icon=":material/refresh:", width="stretch", key="refresh_runs")


# ------------------------------------------------------------------------ cached readers


def _stat(path: Path) -> tuple[int, int]:
    try:
        st_ = path.stat()
        return st_.st_mtime_ns, st_.st_size
    except OSError:
        return 0, 0


@st.cache_resource(max_entries=6, show_spinner=False)
def _predictions(path: str, stamp: tuple[int, int], num_clusters: int | None) -> Predictions | None:
    arrays = read_predictions(Path(path))
    return None if arrays is None else from_arrays(arrays, num_clusters)


def predictions(ref: RunRef, config: dict[str, Any] | None = None) -> Predictions | None:
    """The run's predictions (shared, read-only: never modify the arrays in place)."""
    config = config if config is not None else (read_config(ref.path) or {})
    stamp = _stat(ref.path / PREDICTIONS_FILE)
    if stamp == (0, 0):
        return None
    return _predictions(str(ref.path), stamp, config.get("num_clusters"))


@st.cache_resource(max_entries=4, show_spinner=False)
def _history(path: str, stamp: tuple[int, int]) -> RunHistory | None:
    return read_history(Path(path))


def history(ref: RunRef) -> RunHistory | None:
    """The run's ``history.bin`` (memory-mapped; None for runs from before it existed)."""
    stamp = _stat(ref.path / HISTORY_FILE)
    return None if stamp == (0, 0) else _history(str(ref.path), stamp)


@st.cache_resource(max_entries=4, show_spinner="Reading every evaluation of the run…")
def _sample_history(path: str, stamp: tuple[int, int]) -> story.SampleHistory | None:
    hist = read_history(Path(path))
    return None if hist is None or len(hist) < 2 else story.sample_history(hist)


def sample_history(ref: RunRef) -> story.SampleHistory | None:
    """Per image: flips, settled evaluation, final cluster (one pass over the history, cached)."""
    return _sample_history(str(ref.path), _stat(ref.path / HISTORY_FILE))


@st.cache_data(max_entries=64, show_spinner=False)
def _metrics(path: str, stamp: tuple[int, int]) -> list[dict[str, Any]]:
    return read_metrics(Path(path))


def metrics(ref: RunRef) -> list[dict[str, Any]]:
    return _metrics(str(ref.path), _stat(ref.path / "metrics.jsonl"))


@st.cache_resource(max_entries=3, show_spinner="Loading the run's data set…")
def _data_view(
    dataset: str | None,
    root: str | None,
    split: str | None,
    image_size: int | None,
    label_column: str | None,
    num_clusters: int | None,
) -> DataView:
    return load_data_view(dataset, root, split, image_size, label_column, num_clusters)


def data_view(config: dict[str, Any]) -> DataView:
    return _data_view(
        config.get("dataset"),
        config.get("root"),
        config.get("split"),
        config.get("image_size"),
        config.get("label_column"),
        config.get("num_clusters"),
    )


@st.cache_resource(max_entries=4, show_spinner="Building the similarity matrix of the sample…")
def _graph_sample(path: str, stamp: tuple[int, int], size: int, seed: int) -> GraphSample | None:
    arrays = read_predictions(Path(path))
    pred = None if arrays is None else from_arrays(arrays)
    if pred is None or pred.z is None or pred.probs is None:
        return None
    positions = graphstats.sample_positions(len(pred), size, seed)
    return graphstats.build_sample(pred.z, pred.probs, pred.label, positions)


def graph_sample(ref: RunRef, size: int, seed: int = 0) -> GraphSample | None:
    """A sample of the run's embeddings with its similarity matrix, built once per
    (predictions file, size, seed): the sliders then only threshold it."""
    return _graph_sample(str(ref.path), _stat(ref.path / PREDICTIONS_FILE), int(size), int(seed))


@dataclass
class RunContext:
    ref: RunRef
    config: dict[str, Any]
    status: dict[str, Any]
    pred: Predictions | None


def run_context(require_predictions: bool = True) -> RunContext | None:
    """The selected run's files, with a message (and None) when the page cannot draw."""
    ref = selected_run()
    if ref is None:
        st.info(
            "No run selected. Launch one on the **Runs** page, or point the sidebar's runs folder at "
            "a folder of run directories."
        )
        return None
    config = read_config(ref.path) or {}
    status = read_status(ref.path) or {}
    run_header(ref, config, status)
    pred = predictions(ref, config)
    if require_predictions and pred is None:
        state = status.get("state", "unknown")
        if state in LIVE_STATES or not status:
            st.info(
                "This run has no predictions yet: they are written at the end of its first epoch. "
                "This page fills in then (switch pages or press Refresh)."
            )
        else:
            st.warning(f"This run ({state}) has no readable predictions.npz.")
        return None
    if pred is not None and pred.missing:
        st.caption(f"predictions.npz lacks: {', '.join(pred.missing)} (the views that need them say so).")
    return RunContext(ref, config, status, pred)


def page(title: str, needs_run: bool = True) -> RunContext | None:
    """Every page's opening: its title, a message left by the previous page, and (``needs_run``)
    the selected run with its predictions, or a message and ``st.stop()`` when there is none."""
    st.title(title)
    show_flash()
    if not needs_run:
        return None
    ctx = run_context()
    if ctx is None:
        st.stop()
    return ctx


STATE_COLORS = {
    "running": "blue",
    "created": "blue",
    "finished": "green",
    "stopped": "orange",
    "failed": "red",
    "stale": "gray",
}


def state_badge(state: str) -> str:
    return f":{STATE_COLORS.get(state, 'gray')}-badge[{state}]"


def run_header(ref: RunRef, config: dict[str, Any], status: dict[str, Any]) -> None:
    state = status.get("state", "starting" if not config else "unknown")
    bits = [f"**{ref.run_id}**", state_badge(state)]
    if config:
        bits.append(f"{config.get('method', '?')} on {config.get('dataset', '?')}")
    if ref.read_only:
        bits.append(":violet-badge[demo, read-only]")
    st.markdown(" · ".join(bits))


def class_names_for(ctx: RunContext, view: DataView) -> list[str]:
    if view.class_names:
        return view.class_names
    if ctx.pred is not None and ctx.pred.label is not None:
        return [str(i) for i in range(int(ctx.pred.label.max()) + 1)]
    return []
