"""Every studio page under Streamlit's AppTest: against the shipped demo run and against
synthetic run directories with missing or half-written files (a run still in progress, no
labels, vector data, a data root that is not on this machine, a failed run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `app` is imported from the repository (see test_app_logic.py)

from streamlit.testing.v1 import AppTest  # noqa: E402

from app.logic import launch, projection  # noqa: E402
from app.logic.runsdir import DEMO_RUNS, resolve_runs_folder  # noqa: E402
from app.logic.synthetic import fabricate_run  # noqa: E402
from clustering.metrics import accuracy  # noqa: E402
from clustering.runs import read_predictions  # noqa: E402

MAIN = str(REPO / "app" / "main.py")
PAGES = {
    "views/runs.py": "Runs",
    "views/curves.py": "Training curves",
    "views/story.py": "Run story",
    "views/confusion.py": "Confusion matrix",
    "views/embedding.py": "Embedding map",
    "views/graph.py": "Community graph",
    "views/galleries.py": "Galleries & failure cases",
    "views/compare.py": "Compare runs",
}
DEMO_ID = "demo-uccc-digits"


def _seed_projection(run_dir: Path, cache: Path, n: int) -> None:
    """A fake cached t-SNE so page tests never spend seconds on a real one (the projection
    itself is tested in test_app_logic.py)."""
    params = projection.ProjectionParams(subsample=None if n <= 5000 else 5000)
    key = projection.cache_key(projection.predictions_fingerprint(run_dir / "predictions.npz"), params)
    positions = np.arange(n)
    projection.save(cache, key, positions, np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("studio_runs")
    fabricate_run(root / "done", n=300)
    fabricate_run(root / "live", n=300, state="running", alive_pid=True, torn_metrics=True, predictions=False)
    fabricate_run(root / "nolabels", n=300, labels=False)
    fabricate_run(root / "nohistory", n=300, history=False, seed=1)  # a run from before history.bin
    fabricate_run(root / "ownmaps", n=300, seed=2, own_maps=("tsne", "umap"))  # maps written by the run
    features = root / "features.npy"  # the library's `vectors` source reads a feature matrix
    np.save(features, np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32))
    fabricate_run(root / "vectors", n=120, dataset="vectors", root=str(features), image_size=None)
    fabricate_run(root / "elsewhere", n=300, dataset="mnist-test", root="/gpu-box/data/mnist", image_size=28)
    fabricate_run(root / "crashed", n=300, state="failed")
    fabricate_run(root / "halfway", n=300, state="running")  # process gone: "stale"
    (root / "torn").mkdir()
    (root / "torn" / "config.json").write_text('{"method": "uccc", "datas')  # half-written
    (root / "torn" / "status.json").write_text("{}")
    (root / "torn" / "predictions.npz").write_bytes(b"PK\x03\x04 half a zip")
    for name, n in (
        ("done", 300),
        ("nolabels", 300),
        ("vectors", 120),
        ("elsewhere", 300),
        ("crashed", 300),
        ("halfway", 300),
        ("nohistory", 300),
    ):
        _seed_projection(root / name, root / name / "cache", n)
    _seed_projection(DEMO_RUNS / DEMO_ID, root / ".studio-cache" / DEMO_ID, 1797)
    return root


def open_page(runs: Path, page: str, run_id: str | None = None, **state: object) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.session_state["runs_folder"] = str(runs)
    if run_id:
        at.session_state["_next_run_id"] = run_id
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page != "views/runs.py":
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest, page: str) -> None:
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    assert [t.value for t in at.title] == [PAGES[page]]


# ------------------------------------------------------------------------------ the demo run


@pytest.mark.parametrize("page", list(PAGES))
def test_demo_pages(runs: Path, page: str) -> None:
    at = open_page(runs, page, DEMO_ID)
    assert_clean(at, page)
    assert at.sidebar.selectbox(key="run_id").value == DEMO_ID


def test_demo_is_visible_with_an_empty_runs_folder(tmp_path: Path) -> None:
    at = open_page(tmp_path, "views/runs.py")
    assert_clean(at, "views/runs.py")
    assert at.sidebar.selectbox(key="run_id").value == DEMO_ID
    table = at.dataframe[0].value
    # Every shipped demo run is listed, marked as a demo, finished and above chance.
    shipped = sorted(p.name for p in DEMO_RUNS.iterdir() if (p / "config.json").is_file())
    assert sorted(table["run"].tolist()) == shipped and DEMO_ID in shipped
    assert table["demo"].all() and (table["status"] == "finished").all()
    assert (table["best ACC"] > 0.5).all()


def test_demo_confusion_numbers(runs: Path) -> None:
    at = open_page(runs, "views/confusion.py", DEMO_ID)
    pred = read_predictions(DEMO_RUNS / DEMO_ID)
    acc = accuracy(pred["label"], pred["cluster"])
    assert at.metric[0].value == f"{acc:.3f}"
    mapping = at.dataframe[0].value
    assert len(mapping) == 10 and sorted(mapping["class"]) == [str(i) for i in range(10)]
    at.radio(key="cm_mode").set_value("row-normalised").run()
    assert not at.exception
    at.selectbox(key="cm_row").set_value(1).run()
    assert not at.exception and any("images, most confident first" in m.value for m in at.markdown)


def test_demo_graph_numbers_and_sliders(runs: Path) -> None:
    at = open_page(runs, "views/graph.py", DEMO_ID)
    values = {m.label: m.value for m in at.metric}
    assert values["Positive threshold"] == "0.258"  # Table 1, C = 10, t = 4
    at.slider(key="g_k").set_value(3).run()
    assert not at.exception and len(at.dataframe[0].value) == 3
    at.radio(key="g_mode").set_value("explicit threshold").run()
    at.slider(key="g_thr").set_value(0.6).run()
    assert not at.exception and {m.label: m.value for m in at.metric}["Positive threshold"] == "0.600"
    at.number_input(key="g_focus_input").set_value(5).run()
    assert not at.exception and any("Hop 3" in m.value for m in at.markdown)


def test_demo_embedding_uses_cached_projection(runs: Path) -> None:
    at = open_page(runs, "views/embedding.py", DEMO_ID)
    assert_clean(at, "views/embedding.py")
    assert all(b.key != "map_compute" for b in at.button)  # cached: no "compute" step
    assert len(at.get("plotly_chart")) == 1
    for color in ("label", "correct / wrong", "confidence"):
        at.selectbox(key="map_color").set_value(color).run()
        assert not at.exception


def test_demo_galleries_failures(runs: Path) -> None:
    at = open_page(runs, "views/galleries.py", DEMO_ID)
    assert_clean(at, "views/galleries.py")
    assert any("carry a label other than" in m.value for m in at.markdown)
    at.slider(key="gal_conf").set_value((0.9, 1.0)).run()
    assert not at.exception


# ------------------------------------------------------------------------------ synthetic runs


@pytest.mark.parametrize(
    "run_id", ["done", "live", "nolabels", "vectors", "elsewhere", "crashed", "halfway", "torn", "nohistory"]
)
@pytest.mark.parametrize("page", list(PAGES))
def test_synthetic_runs_every_page(runs: Path, run_id: str, page: str) -> None:
    at = open_page(runs, page, run_id)
    assert_clean(at, page)


def test_run_in_progress_without_predictions(runs: Path) -> None:
    at = open_page(runs, "views/confusion.py", "live")
    assert any("no predictions yet" in i.value for i in at.info)
    at = open_page(runs, "views/curves.py", "live")
    assert not at.exception
    progress = [p.proto.text for p in at.get("progress")]
    assert any(text.startswith("live: epoch 7") for text in progress), progress  # epoch 6 done, 7 running
    assert len(at.get("plotly_chart")) >= 4  # curves drawn from the complete rows (the torn one skipped)


def test_no_labels_run(runs: Path) -> None:
    at = open_page(runs, "views/confusion.py", "nolabels")
    assert any("no labels" in i.value for i in at.info)
    assert list(at.dataframe[0].value.columns) == ["cluster", "size", "mean confidence"]
    at = open_page(runs, "views/galleries.py", "nolabels")
    assert any("doubts" in m.value for m in at.markdown)
    assert any("Community disagrees" in m.value for m in at.markdown)
    at = open_page(runs, "views/graph.py", "nolabels")
    assert {m.label: m.value for m in at.metric}["ACC"] == "n/a"


def test_vector_and_missing_data_runs_say_so(runs: Path) -> None:
    at = open_page(runs, "views/galleries.py", "vectors")
    assert any("holds vectors, not images" in i.value for i in at.info)
    at = open_page(runs, "views/confusion.py", "elsewhere")
    assert any("cannot be loaded on this machine" in i.value for i in at.info)
    assert at.metric[0].value  # the numbers are still there


def test_runs_page_table_and_states(runs: Path) -> None:
    at = open_page(runs, "views/runs.py", "halfway")
    table = at.dataframe[0].value
    states = dict(zip(table["run"], table["status"], strict=True))
    assert states["live"] == "running" and states["halfway"] == "stale" and states["crashed"] == "failed"
    assert states[DEMO_ID] == "finished" and "torn" in states
    assert any("process is gone" in w.value for w in at.warning)


def test_launch_form_is_built_from_params_and_launches(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: list[list[str]] = []
    monkeypatch.setattr(launch, "spawn", lambda cmd, folder, run_id: spawned.append(cmd) or 4242)
    at = open_page(runs, "views/runs.py", "done")
    for name in ("variant", "cluster_temperature", "khop", "tolerance", "pos_conf"):
        assert any(
            w.key == f"param_uccc_{name}" for w in [*at.selectbox, *at.number_input, *at.text_input]
        ), name
    at.number_input(key="param_uccc_khop").set_value(3)
    at.text_input(key="param_uccc_pos_conf").set_value("0.4")
    switch = at.selectbox(key="param_uccc_strong_view")  # chosen from the data unless set (auto is not sent)
    assert switch.value is None and switch.options == ["auto (from the data)", "true", "false"]
    switch.set_value(False)
    at.button(key="FormSubmitter:launch_form-Launch").click().run()
    assert not at.exception and len(spawned) == 1
    cmd = spawned[0]
    assert "khop=3" in cmd and "pos_conf=0.4" in cmd and cmd[cmd.index("--out") + 1] == str(runs)
    assert "strong_view=false" in cmd and not any("neighbor_view" in part for part in cmd)
    at.button(key="quick_train").click().run()
    assert len(spawned) == 2 and spawned[1][spawned[1].index("--dataset") + 1] == "digits"


def test_launch_form_can_keep_registered_defaults_a_backbone_would_replace(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[list[str]] = []
    monkeypatch.setattr(launch, "spawn", lambda cmd, folder, run_id: spawned.append(cmd) or 4242)
    at = open_page(runs, "views/runs.py", "done")
    assert not any(w.key == "params_as_shown_uccc" for w in at.checkbox)  # UCCC's CNN default is only its lr
    at.selectbox(key="launch_method").set_value("gcc").run()
    assert any("rgc_temperature=0.5" in c.value for c in at.caption)  # the CNN's replacement is announced
    at.button(key="FormSubmitter:launch_form-Launch").click().run()
    assert not at.exception and "rgc_temperature=0.1" not in spawned[-1]  # left to the backbone's default
    at.checkbox(key="params_as_shown_gcc").check()
    at.button(key="FormSubmitter:launch_form-Launch").click().run()
    assert not at.exception and len(spawned) == 2 and "rgc_temperature=0.1" in spawned[-1]


def test_manage_actions(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "own"
    fabricate_run(folder / "mine", n=50, state="running", alive_pid=True)
    fabricate_run(folder / "old", n=50, state="stopped")
    at = open_page(folder, "views/runs.py", "mine")
    at.button(key="stop_btn").click().run()
    assert (folder / "mine" / "STOP").exists()
    resumed: list[list[str]] = []
    monkeypatch.setattr(launch, "spawn", lambda cmd, f, run_id: resumed.append(cmd) or 1)
    at = open_page(folder, "views/runs.py", "old")
    at.button(key="resume_btn").click().run()
    assert resumed and "--resume" in resumed[0]
    assert at.button(key="delete_btn").disabled  # not confirmed yet
    at.checkbox(key="confirm_delete").check().run()
    at.button(key="delete_btn").click().run()
    assert not at.exception and not (folder / "old").exists()


def test_blank_runs_folder_falls_back_to_the_default(runs: Path) -> None:
    at = open_page(runs, "views/runs.py")
    at.sidebar.text_input(key="runs_folder").set_value("  ").run()
    assert not at.exception
    default = str(resolve_runs_folder(sys.argv[1:]))  # "runs" unless $CLUSTER_STUDIO_RUNS says otherwise
    assert at.sidebar.text_input(key="runs_folder").value == default  # not the working directory


def test_run_story_numbers_and_controls(runs: Path) -> None:
    from app.logic import story
    from clustering.history import read_history

    at = open_page(runs, "views/story.py", "done")
    assert_clean(at, "views/story.py")
    history = read_history(runs / "done")
    values = {m.label: m.value for m in at.metric}
    assert values["Evaluations"] == str(len(history)) == "12"
    assert values["Changed cluster at the last evaluation"] == f"{story.churn(history)[-1]:.1%}"
    assert len(at.get("plotly_chart")) >= 6  # sizes, churn, Sankey, two histograms, trajectory
    table = at.dataframe[0].value
    flips = story.sample_history(history).flips
    assert table["changes"].iloc[0] == flips.max()
    at.select_slider(key="story_range").set_value((0, 11)).run()
    assert not at.exception
    at.number_input(key="story_focus").set_value(7).run()
    assert not at.exception and any("Image #7" in c.proto.spec for c in at.get("plotly_chart"))


def test_run_story_of_a_run_without_history_says_so(runs: Path) -> None:
    at = open_page(runs, "views/story.py", "nohistory")
    assert_clean(at, "views/story.py")
    assert any("no history" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 1  # sizes over time from metrics.jsonl


def test_compare_runs_page(runs: Path) -> None:
    from app.logic import compare

    at = open_page(runs, "views/compare.py", "done")
    assert_clean(at, "views/compare.py")
    other = at.selectbox(key="cmp_b").value
    assert other != "done"
    a, b = read_predictions(runs / "done"), read_predictions(runs / other)
    result = compare.compare_runs(a["cluster"], b["cluster"], a["label"])
    values = {m.label: m.value for m in at.metric}
    assert values["Agreement (aligned)"] == f"{result.agreement:.3f}"
    assert values["Images in different clusters"] == f"{len(result.disagree):,}"
    at.selectbox(key="cmp_b").set_value("nohistory").run()
    assert not at.exception
    at.radio(key="cmp_show").set_value("only B right").run()
    assert not at.exception


def test_embedding_opens_the_runs_own_map_without_computing(runs: Path) -> None:
    at = open_page(runs, "views/embedding.py", "ownmaps")
    assert_clean(at, "views/embedding.py")
    assert all(b.key != "map_compute" for b in at.button)
    assert at.selectbox(key="map_points").disabled and at.selectbox(key="map_points").value == 300
    assert "the run's own map" in at.get("plotly_chart")[0].proto.spec
    at.radio(key="map_method").set_value("umap").run()
    assert not at.exception and "the run's own map" in at.get("plotly_chart")[0].proto.spec
    at.number_input(key="map_perplexity").set_value(10.0).run()  # a UMAP knob is unchanged: still the run's
    assert "the run's own map" in at.get("plotly_chart")[0].proto.spec
    at.radio(key="map_method").set_value("tsne").run()  # t-SNE at perplexity 10 is not the run's map
    assert not at.exception and not at.selectbox(key="map_points").disabled


def test_embedding_density_view_selects_every_point_inside_a_box(runs: Path) -> None:
    from clustering import projections

    coords = projections.read_run_projection(runs / "ownmaps", "tsne", "z", read_predictions(runs / "ownmaps")["step"])
    assert coords is not None and len(coords) == 300
    x_cut, y_cut = np.median(coords[:, 0]), np.quantile(coords[:, 1], 0.7)
    inside = (coords[:, 0] <= x_cut) & (coords[:, 1] <= y_cut)
    box = {"xref": "x", "yref": "y", "x": [float(coords[:, 0].min()) - 1, float(x_cut)],
           "y": [float(y_cut), float(coords[:, 1].min()) - 1]}  # fmt: skip
    event = {"selection": {"points": [], "point_indices": [], "box": [box], "lasso": []}}
    at = open_page(runs, "views/embedding.py", "ownmaps", map_draw="density", map_density=event)
    assert_clean(at, "views/embedding.py")
    spec = at.get("plotly_chart")[0].proto.spec
    assert "· density" in json.loads(spec)["layout"]["title"]["text"], spec[-3000:]
    assert json.loads(spec)["layout"]["images"][0]["source"].startswith("data:image/png;base64,")
    assert any(m.value.startswith(f"**{inside.sum()}** selected") for m in at.markdown)
    table = at.dataframe[-1].value  # the selection's export table: exactly the points in the box
    assert sorted(table["index"].tolist()) == sorted(read_predictions(runs / "ownmaps")["index"][inside].tolist())
    for color in ("label", "correct / wrong", "confidence"):
        at.selectbox(key="map_color").set_value(color).run()
        assert not at.exception
