"""Runs: the table of runs, launching, stopping, resuming, deleting, picking runs to compare."""

from __future__ import annotations

import streamlit as st

from app.logic import launch, runsdir
from app.ui import context
from clustering.runs import read_config, read_status

QUICK_EPOCHS = 60  # about two minutes on one CPU thread: long enough to watch the curves grow

folder = context.runs_folder()
context.page("Runs", needs_run=False)
st.caption(
    f"Runs folder: `{folder}`" + ("" if folder.is_dir() else " (does not exist yet; created on launch)")
)

# ------------------------------------------------------------------ first contact: one click
left, right = st.columns([3, 2])
with left:
    if st.button(
        f"Train a run on digits now (UCCC, {QUICK_EPOCHS} epochs)",
        type="primary",
        icon=":material/play_arrow:",
        key="quick_train",
    ):
        run_id, pid = launch.launch(launch.LaunchRequest(epochs=QUICK_EPOCHS), folder)
        context.select_run(run_id)
        st.session_state["compare"] = [run_id]
        st.switch_page("views/curves.py")
with right:
    st.caption("Runs are separate processes: they keep going if you close the browser or restart the studio.")

# ------------------------------------------------------------------ launches not visible yet
for pending in runsdir.pending_launches(folder):
    if pending["alive"]:
        st.info(
            f"Run **{pending['run_id']}** is starting (pid {pending['pid']})…",
            icon=":material/hourglass_top:",
        )
    else:
        with st.container(border=True):
            st.error(f"Run **{pending['run_id']}** exited before writing its run directory. Its log:")
            st.code(runsdir.tail(pending["log"], 20) or "(empty log)")
            if st.button("Dismiss", key=f"dismiss_{pending['run_id']}"):
                runsdir.dismiss_launch(folder, pending["run_id"])
                st.rerun()

# ------------------------------------------------------------------ the table
refs = context.all_runs()
if not refs:
    st.info("No runs in this folder yet. Train one with the button above or the form below.")
else:
    table = runsdir.runs_frame(refs)
    st.markdown(
        "Tick runs to compare them on **Training curves**; the sidebar's run is the one the other pages show."
    )
    event = st.dataframe(
        table.drop(columns=["error"]),
        hide_index=True,
        width="stretch",
        key="runs_table",
        on_select="rerun",
        selection_mode="multi-row",
        column_config={
            "best ACC": st.column_config.NumberColumn(format="%.3f"),
            "best NMI": st.column_config.NumberColumn(format="%.3f"),
            "best ARI": st.column_config.NumberColumn(format="%.3f"),
            "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "demo": st.column_config.CheckboxColumn(help="shipped demo run, read-only"),
        },
    )
    picked = [refs[i].run_id for i in event.selection.rows] if event is not None else []
    if picked:
        st.session_state["compare"] = picked
        c1, c2, _ = st.columns([1, 1, 3])
        if c1.button("Compare curves", icon=":material/stacked_line_chart:", key="compare_btn"):
            st.switch_page("views/curves.py")
        if len(picked) == 1 and c2.button("Open this run", icon=":material/open_in_new:", key="open_btn"):
            context.select_run(picked[0])
            st.rerun()

# ------------------------------------------------------------------ manage the sidebar's run
ref = context.selected_run()
if ref is not None and ref.path.exists():
    status = read_status(ref.path) or {}
    state = status.get("state", "unknown")
    with st.expander(f"Manage **{ref.run_id}** ({state})", expanded=state in ("failed", "stale")):
        if status.get("error"):
            st.error(status["error"])
        if state == "stale":
            st.warning(
                "The run's process is gone without marking the run ended (crash, kill or reboot); "
                "resume it from its last checkpoint."
            )
        log = runsdir.log_path(folder, ref.run_id)
        if log.exists():
            st.code(runsdir.tail(log, 15), language=None)
        if ref.read_only:
            st.caption("Demo runs are read-only. Copy it into your runs folder to resume or delete it.")
            if st.button("Copy into runs folder", key="copy_demo"):
                try:
                    runsdir.copy_demo(ref, folder)
                    st.success(f"Copied to {folder / ref.run_id}")
                except FileExistsError as exc:
                    st.error(str(exc))
        else:
            c1, c2, c3 = st.columns(3)
            with c1:
                if st.button(
                    "Stop (keeps the checkpoint)",
                    disabled=state not in ("running", "created"),
                    icon=":material/stop:",
                    key="stop_btn",
                ):
                    launch.stop(ref.path)
                    st.toast("Stop requested: the run checkpoints and ends after its current step.")
            with c2:
                more = st.number_input(
                    "Resume: total epochs (0 = keep)", min_value=0, value=0, step=10, key="resume_epochs"
                )
                if st.button(
                    "Resume",
                    disabled=state in ("running", "created"),
                    icon=":material/replay:",
                    key="resume_btn",
                ):
                    launch.resume(ref.path, folder, epochs=int(more) or None)
                    st.toast(f"Resuming {ref.run_id}")
            with c3:
                sure = st.checkbox("I want to delete this run and its checkpoints", key="confirm_delete")
                if st.button(
                    "Delete",
                    disabled=not sure or state in ("running", "created"),
                    type="secondary",
                    icon=":material/delete:",
                    key="delete_btn",
                ):
                    runsdir.delete_run(ref.path)
                    runsdir.dismiss_launch(folder, ref.run_id)
                    context.select_run(None)
                    context.flash(f"Deleted {ref.run_id}")
                    st.rerun()

# ------------------------------------------------------------------ launch form


@st.cache_data(max_entries=16, show_spinner="Looking at the data set…")
def data_defaults_rows(method: str, dataset: str, root: str | None) -> list[dict[str, str]]:
    return launch.preview_defaults(launch.LaunchRequest(method=method, dataset=dataset, root=root))


def show_data_defaults(method: str, dataset: str, root: str | None) -> None:
    """What the trainer will choose from the data where the form below is left at 'auto'."""
    if launch.get_source(dataset).needs_root and not root:
        st.caption(f"Data set {dataset!r} needs a data root; its defaults are shown once it has one.")
        return
    try:
        rows = data_defaults_rows(method, dataset, root)
    except launch.UserError as exc:
        st.warning(f"Cannot read this data set: {exc}")
        return
    st.caption("Chosen from the data where the form leaves them on auto (each one is a field below):")
    st.dataframe(rows, hide_index=True, width="stretch", key="data_defaults")


st.subheader("Launch a run")
methods = launch.method_names()
method = st.selectbox(
    "Method", methods, index=methods.index("uccc") if "uccc" in methods else 0, key="launch_method"
)
method_cls = launch.get_method(method)
st.caption(method_cls.description)
specs = launch.param_specs(method_cls)
c1, c2 = st.columns(2)
sources = launch.source_names()
dataset = c1.selectbox("Data set", sources, index=sources.index("digits") if "digits" in sources else 0,
                       key="launch_dataset")  # fmt: skip
root = c2.text_input("Data root", help="folder (or file) holding the data set; embedded sets need none",
                     key="launch_root")  # fmt: skip
show_data_defaults(method, dataset, root.strip() or None)
with st.form("launch_form"):
    c1, c2, c3 = st.columns(3)
    backbone = c1.selectbox("Backbone", ["auto", "cnn", "resnet18", "resnet34", "mlp"])
    image_size = c2.number_input("Image size in px (0 = from the data)", min_value=0, value=0, step=4)
    augment = c3.selectbox("Augmentation", ["auto", *launch.AUGMENT_PRESETS],
                           help="auto: from the data's channels, and for grayscale whether its mirror images "
                                "belong to it (flips)")  # fmt: skip
    c1, c2, c3, c4, c5 = st.columns(5)
    budget = c1.radio("Budget", ["epochs", "minutes"], horizontal=True)
    amount = c2.number_input("Epochs or minutes", min_value=1.0, value=30.0, step=5.0)
    device = c3.selectbox("Device", ["auto", "cpu", "cuda"])
    kmeans_restarts = c4.selectbox(
        "k-means restarts at the end", [None, 0, 10, 20], format_func=lambda n: "auto" if n is None else str(n),
        help="when the run finishes, k-means in the backbone features from this many k-means++ starts replaces "
             "the head's partition where the k-means objective is higher; auto: 10 for CC, SACC and GCC (their "
             "uniform prior on cluster sizes evens unequal classes), 0 for the others",
    )  # fmt: skip
    umap_gmm = c5.selectbox(
        "UMAP + GMM at the end", launch.UMAP_GMM_CHOICES, format_func=launch.umap_gmm_label,
        help="when the run finishes, a Gaussian mixture on a UMAP embedding of the backbone features replaces "
             "the head's partition (then no refit, restarts or moves unless asked); auto: on for CC, SACC and GCC, "
             "whose uniform prior on cluster sizes evens unequal classes, and for UCCC if the head is uneven (its "
             "largest cluster above 1.3 times the mean: the classes differ in size, or it cut or pooled classes)",
    )  # fmt: skip
    c1, c2, c3, c4, c5, c6, c7 = st.columns(7)
    batch = c1.number_input("Batch size (0 = from the method and data)", min_value=0, value=0, step=32)
    lr = c2.number_input("Learning rate (0 = default)", min_value=0.0, value=0.0, step=1e-4, format="%.5f")
    seed = c3.number_input("Seed", min_value=0, value=0, step=1)
    threads = c4.number_input(
        "CPU threads", min_value=1, value=1, step=1, help="torch threads; the studio needs a core too"
    )
    self_label = c5.number_input(
        "Self-label from (0 = off)", min_value=0.0, max_value=0.95, value=0.0, step=0.05,
        help="fraction of the run after which confident images label their strong views (image data only)",
    )
    refit_head = c6.selectbox(
        "Head refit at the end", launch.OPTIONAL_BOOL_CHOICES, format_func=launch.optional_bool_label,
        help="when the run finishes, re-centre the head's clusters in the backbone features (spherical k-means "
             "from its partition); auto: on below 100 images per cluster",
    )  # fmt: skip
    split_merge = c7.selectbox(
        "Split and merge at the end", launch.OPTIONAL_BOOL_CHOICES, format_func=launch.optional_bool_label,
        help="when the run finishes, rejoin a class split over two clusters and part two classes sharing one, "
             "where that raises the k-means objective in the backbone features; auto: on from 3 clusters",
    )  # fmt: skip
    st.markdown(f"**{method} parameters** (registered defaults)")
    overrides = launch.backbone_overrides(method_cls)
    for name, shown in overrides.items():
        st.caption(f"On the {name} backbone these replace the registered defaults (a field left at its registered "
                   "default keeps them): " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    replaced = {k for shown in overrides.values() for k in shown} & {spec.name for spec in specs}
    as_shown = bool(replaced) and st.checkbox(
        "Use the parameters exactly as shown, on every backbone",
        key=f"params_as_shown_{method}",
        help="Sends every field below, so a registered default is kept even where a backbone replaces it.",
    )
    values: dict[str, object] = {}
    cols = st.columns(3)
    for i, spec in enumerate(specs):
        col = cols[i % 3]
        key = f"param_{method}_{spec.name}"
        if spec.kind == "choice":
            values[spec.name] = col.selectbox(
                spec.name,
                spec.choices,
                index=spec.choices.index(spec.default) if spec.default in spec.choices else 0,
                help=spec.help,
                key=key,
            )
        elif spec.kind == "bool" and spec.optional:  # None: chosen from the data (the table above the form)
            values[spec.name] = col.selectbox(
                spec.name,
                launch.OPTIONAL_BOOL_CHOICES,
                index=launch.OPTIONAL_BOOL_CHOICES.index(spec.default),
                format_func=launch.optional_bool_label,
                help=spec.help,
                key=key,
            )
        elif spec.kind == "bool":
            values[spec.name] = col.checkbox(spec.name, value=bool(spec.default), help=spec.help, key=key)
        elif spec.optional or spec.kind == "str":
            text = col.text_input(
                spec.name,
                value="" if spec.default is None else str(spec.default),
                help=(spec.help + " Empty = none.") if spec.optional else spec.help,
                key=key,
            )
            values[spec.name] = text.strip() or None
        elif spec.kind == "int":
            values[spec.name] = int(
                col.number_input(spec.name, value=int(spec.default), step=1, help=spec.help, key=key)
            )
        else:
            values[spec.name] = float(
                col.number_input(
                    spec.name, value=float(spec.default), step=0.05, format="%.4f", help=spec.help, key=key
                )
            )
    submitted = st.form_submit_button("Launch", type="primary", icon=":material/rocket_launch:")

if submitted:
    problems = []
    if launch.get_source(dataset).needs_root and not root.strip():
        problems.append(f"data set {dataset!r} needs a data root")
    params = launch.changed_params(specs, values, as_shown=as_shown)
    for spec in specs:  # text fields of optional numbers: check before a process is spent on it
        if spec.optional and spec.kind in ("int", "float") and isinstance(params.get(spec.name), str):
            try:
                params[spec.name] = (
                    float(params[spec.name]) if spec.kind == "float" else int(params[spec.name])
                )
            except ValueError:
                problems.append(f"{spec.name} must be a number or empty")
    if problems:
        st.error("; ".join(problems))
    else:
        req = launch.LaunchRequest(
            method=method,
            dataset=dataset,
            root=root.strip() or None,
            backbone=None if backbone == "auto" else backbone,
            image_size=int(image_size) or None,
            augment=None if augment == "auto" else augment,
            epochs=int(amount) if budget == "epochs" else None,
            minutes=float(amount) if budget == "minutes" else None,
            batch_size=int(batch) or None,
            lr=float(lr) or None,
            seed=int(seed),
            device=device,
            threads=int(threads),
            self_label=float(self_label) or None,
            refit_head=refit_head,
            split_merge=split_merge,
            kmeans_restarts=kmeans_restarts,
            umap_gmm=umap_gmm,
            params=params,
        )
        run_id, pid = launch.launch(req, folder)
        context.select_run(run_id)
        context.flash(f"Launched **{run_id}** (pid {pid}). Follow it on Training curves.")
        st.rerun()

# Keep the config of the selected run at hand for the curious (what exactly was trained).
if ref is not None and ref.path.exists():
    with st.expander("config.json of the selected run"):
        st.json(read_config(ref.path) or {}, expanded=False)
