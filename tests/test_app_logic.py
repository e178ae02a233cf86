"""Unit tests of the studio's view logic (app/logic): plain functions, no Streamlit."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest

# `app` is not an installed package (pyproject installs `clustering` only): import it from the
# repository, as `streamlit run app/main.py` does.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.logic import confusion, curves, failures, graphstats, images, launch, projection, runsdir, selection
from app.logic.predictions import from_arrays
from app.logic.synthetic import fabricate_predictions, fabricate_run
from clustering.graph import community_assignments
from clustering.methods import get_method
from clustering.metrics import accuracy, hungarian_mapping
from clustering.run_summary import summarize_run
from clustering.runs import read_metrics

# ------------------------------------------------------------------------------ runs folder


def test_runs_folder_precedence() -> None:
    assert runsdir.resolve_runs_folder(["--runs", "/a"], {"CLUSTER_STUDIO_RUNS": "/b"}) == Path("/a")
    assert runsdir.resolve_runs_folder([], {"CLUSTER_STUDIO_RUNS": "/b"}) == Path("/b")
    assert runsdir.resolve_runs_folder(["--other", "x"], {}) == Path("runs")


def test_discover_lists_user_runs_then_read_only_demo(tmp_path: Path) -> None:
    runs, demo = tmp_path / "runs", tmp_path / "demo"
    fabricate_run(runs / "mine", n=20)
    fabricate_run(demo / "demo-run", n=20)
    fabricate_run(demo / "mine", n=20)  # same id as a user run: listed once, as the user's
    (runs / ".studio-logs").mkdir()
    (runs / "not-a-run").mkdir()
    refs = runsdir.discover_runs(runs, demo)
    assert [(r.run_id, r.read_only) for r in refs] == [("mine", False), ("demo-run", True)]
    assert "read-only" in refs[1].label
    # caches of read-only runs go to the runs folder, never into the shipped assets
    assert runsdir.cache_dir(refs[1], runs) == runs / ".studio-cache" / "demo-run"
    assert runsdir.cache_dir(refs[0], runs) == runs / "mine" / "cache"


def test_discover_tolerates_missing_folders(tmp_path: Path) -> None:
    assert runsdir.discover_runs(tmp_path / "nope", tmp_path / "nope2") == []


def test_pending_launches_and_dismiss(tmp_path: Path) -> None:
    runsdir.record_launch(tmp_path, "starting", 999_999_999, ["x"], time.time())
    runsdir.record_launch(tmp_path, "done", 999_999_999, ["x"], time.time())
    fabricate_run(tmp_path / "done", n=20)
    pending = runsdir.pending_launches(tmp_path)
    assert [p["run_id"] for p in pending] == ["starting"]
    assert pending[0]["alive"] is False  # that pid does not exist: "failed to start"
    runsdir.dismiss_launch(tmp_path, "starting")
    assert runsdir.pending_launches(tmp_path) == []


def test_copy_demo(tmp_path: Path) -> None:
    src = fabricate_run(tmp_path / "demo" / "d1", n=20)
    (src / "cache").mkdir()
    ref = runsdir.RunRef("d1", src, read_only=True)
    target = runsdir.copy_demo(ref, tmp_path / "runs")
    assert (target / "config.json").exists() and not (target / "cache").exists()
    with pytest.raises(FileExistsError):
        runsdir.copy_demo(ref, tmp_path / "runs")


def test_run_stamp_changes_with_files(tmp_path: Path) -> None:
    run = fabricate_run(tmp_path / "r", n=20)
    before = runsdir.run_stamp(run)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 100}\n')
    assert runsdir.run_stamp(run) != before


# ------------------------------------------------------------------------------ launching


@dataclass
class _ToyParams:
    """Toy.

    flag: a switch.
    steps: how many
        steps (continued line).
    """

    flag: bool = False
    steps: int | None = None
    mode: Literal["a", "b"] = "b"
    name: str = "x"
    rate: float = 0.5


class _ToyMethod:
    name = "toy"
    Params = _ToyParams


def test_param_specs_are_generic() -> None:
    specs = {s.name: s for s in launch.param_specs(_ToyMethod)}
    assert specs["flag"].kind == "bool" and specs["flag"].help == "a switch."
    assert specs["steps"].kind == "int" and specs["steps"].optional and specs["steps"].default is None
    assert specs["steps"].help == "how many steps (continued line)."
    assert specs["mode"].kind == "choice" and specs["mode"].choices == ("a", "b")
    assert specs["name"].kind == "str" and specs["rate"].kind == "float"


def test_param_specs_of_uccc_carry_registered_defaults() -> None:
    specs = {s.name: s for s in launch.param_specs(get_method("uccc"))}
    assert specs["variant"].choices == ("cosine", "paper") and specs["variant"].default == "cosine"
    assert specs["khop"].default == 2 and specs["tolerance"].default == 4.0
    assert specs["pos_conf"].optional and specs["pos_conf"].kind == "float"
    # a switch chosen from the data: the form offers auto / true / false, and auto is not sent
    strong = specs["strong_view"]
    assert strong.kind == "bool" and strong.optional and strong.default is None
    assert launch.OPTIONAL_BOOL_CHOICES.index(specs["strong_view"].default) == 0
    assert [launch.optional_bool_label(v) for v in launch.OPTIONAL_BOOL_CHOICES] == ["auto (from the data)", "true",
                                                                                   "false"]  # fmt: skip
    uccc_specs = list(specs.values())
    assert "strong_view" not in launch.changed_params(uccc_specs, {"strong_view": None})
    assert launch.changed_params(uccc_specs, {"strong_view": False}) == {"strong_view": False}


def test_changed_params_and_formatting() -> None:
    specs = launch.param_specs(_ToyMethod)
    values = {"flag": True, "steps": None, "mode": "b", "name": "x", "rate": 0.5 + 1e-12}
    assert launch.changed_params(specs, values) == {"flag": True}
    assert launch.changed_params(specs, values, as_shown=True) == values
    assert launch.format_param(None) == "none" and launch.format_param(True) == "true"
    assert launch.format_param(0.1) == "0.1" and launch.format_param("cosine") == "cosine"


def test_train_command(tmp_path: Path) -> None:
    req = launch.LaunchRequest(
        method="uccc",
        dataset="digits",
        epochs=3,
        lr=1e-3,
        threads=1,
        params={"khop": 3, "pos_conf": None},
        run_id="r1",
    )
    cmd, run_id = launch.train_command(req, Path("relative/runs"), python="py")
    assert run_id == "r1"
    assert cmd[:4] == ["py", "-m", "clustering", "train"]
    assert cmd[cmd.index("--epochs") + 1] == "3" and "--minutes" not in cmd
    assert cmd[cmd.index("--param") : cmd.index("--param") + 2] == ["--param", "khop=3"]
    assert "pos_conf=none" in cmd
    out = cmd[cmd.index("--out") + 1]
    assert Path(out).is_absolute() and out.endswith("relative/runs")
    assert cmd[-1] == "--no-progress" and "--root" not in cmd
    # a generated id when none is given
    _, generated = launch.train_command(launch.LaunchRequest(), tmp_path)
    assert "uccc-digits" in generated


def test_train_command_is_accepted_by_the_cli_parser(tmp_path: Path) -> None:
    from clustering.cli import build_parser

    req = launch.LaunchRequest(minutes=0.5, batch_size=64, params={"variant": "paper", "tolerance": 3.0},
                               self_label=0.6)  # fmt: skip
    cmd, _ = launch.train_command(req, tmp_path)
    args = build_parser().parse_args(cmd[3:])
    assert args.minutes == 0.5 and args.batch_size == 64 and args.no_progress and args.self_label == 0.6
    assert "--self-label" not in launch.train_command(launch.LaunchRequest(), tmp_path)[0]
    assert sorted(args.param) == ["tolerance=3.0", "variant=paper"]
    assert args.refit_head is None and args.split_merge is None  # auto: left to the data
    assert args.kmeans_restarts is None and args.umap_gmm is None
    for asked in (True, False):
        cmd, _ = launch.train_command(launch.LaunchRequest(refit_head=asked, split_merge=not asked, umap_gmm=asked,
                                                           kmeans_restarts=20 if asked else 0), tmp_path)  # fmt: skip
        parsed = build_parser().parse_args(cmd[3:])
        assert parsed.refit_head is asked and parsed.split_merge is (not asked) and parsed.umap_gmm is asked
        assert parsed.kmeans_restarts == (20 if asked else 0)
    assert set(launch.UMAP_GMM_CHOICES) == {None, True, False, "if_uneven"}
    cmd, _ = launch.train_command(launch.LaunchRequest(umap_gmm="if_uneven"), tmp_path)
    assert "--umap-gmm-if-uneven" in cmd and build_parser().parse_args(cmd[3:]).umap_gmm == "if_uneven"
    assert [launch.umap_gmm_label(v) for v in launch.UMAP_GMM_CHOICES] == [
        "auto (from the data)", "true", "false", "if the head is uneven"]
    resume = launch.resume_command(tmp_path / "r", epochs=20)
    args = build_parser().parse_args(resume[3:])
    assert args.resume == str(tmp_path / "r") and args.epochs == 20


def test_launch_passes_size_and_augmentation_and_previews_the_data_defaults(tmp_path: Path) -> None:
    from clustering.cli import build_parser

    req = launch.LaunchRequest(image_size=24, augment="natural")
    cmd, _ = launch.train_command(req, tmp_path)
    args = build_parser().parse_args(cmd[3:])
    assert args.image_size == 24 and args.augment == "natural"
    rows = {r["setting"]: r for r in launch.preview_defaults(launch.LaunchRequest(dataset="digits-pairs40",
                                                                                   device="cpu"))}
    assert rows["image_size"]["value"] == "16" and rows["augment"]["value"] == "digits"
    assert rows["batch_size"]["value"] == "100" and "N / 4" in rows["batch_size"]["why"]  # 400 images, 40 classes
    assert rows["refit_head"]["value"] == "True" and "10 images per cluster" in rows["refit_head"]["why"]
    assert rows["split_merge"]["value"] == "True" and "k-means objective" in rows["split_merge"]["why"]
    forced = launch.preview_defaults(launch.LaunchRequest(dataset="digits-pairs40", device="cpu", refit_head=False,
                                                          split_merge=False))  # fmt: skip
    assert not {"refit_head", "split_merge"} & {r["setting"] for r in forced}
    rows = {r["setting"]: r for r in launch.preview_defaults(launch.LaunchRequest(device="cpu"))}  # UCCC
    assert rows["umap_gmm"]["value"] == "if_uneven" and "uneven" in rows["umap_gmm"]["why"]
    rows = {r["setting"]: r for r in launch.preview_defaults(launch.LaunchRequest(method="sacc", device="cpu"))}
    assert rows["umap_gmm"]["value"] == "True" and "uniform prior" in rows["umap_gmm"]["why"]
    assert rows["kmeans_restarts"]["value"] == "0" and "UMAP + GMM" in rows["kmeans_restarts"]["why"]
    rows = {r["setting"]: r for r in launch.preview_defaults(launch.LaunchRequest(method="sacc", device="cpu",
                                                                                   umap_gmm=False))}  # fmt: skip
    assert "umap_gmm" not in rows
    assert rows["kmeans_restarts"]["value"] == "10" and "uniform prior" in rows["kmeans_restarts"]["why"]
    forced = launch.preview_defaults(launch.LaunchRequest(method="sacc", device="cpu", kmeans_restarts=0))
    assert "kmeans_restarts" not in {r["setting"] for r in forced}
    chosen = launch.preview_defaults(launch.LaunchRequest(dataset="digits", image_size=12, device="cpu"))
    assert "image_size" not in {r["setting"] for r in chosen}  # set in the form: not a default any more


def test_spawn_runs_detached_and_logs(tmp_path: Path) -> None:
    pid = launch.spawn([sys.executable, "-c", "print('hello from the run')"], tmp_path, "r1")
    log = runsdir.log_path(tmp_path, "r1")
    deadline = time.time() + 20
    while time.time() < deadline and "hello from the run" not in log.read_text():
        time.sleep(0.1)
    assert "hello from the run" in log.read_text()
    record = json.loads((runsdir.log_dir(tmp_path) / "r1.json").read_text())
    assert record["pid"] == pid
    import os

    assert os.getpgid(pid) == pid if runsdir.pid_alive(pid) else True  # its own session/group


def test_stop_writes_the_stop_file(tmp_path: Path) -> None:
    run = fabricate_run(tmp_path / "r", n=20, state="running", alive_pid=True)
    launch.stop(run)
    assert (run / "STOP").exists()


# ------------------------------------------------------------------------------ predictions


def test_from_arrays_derives_and_reports_missing() -> None:
    arrays = fabricate_predictions(50, labels=False)
    pred = from_arrays({"probs": arrays["probs"], "label": arrays["label"]})
    assert pred is not None and (pred.cluster == arrays["probs"].argmax(1)).all()
    assert pred.label is None  # all -1: no labels
    assert set(pred.missing) >= {"z", "h", "confidence", "index"}
    assert np.allclose(pred.confidence, arrays["probs"].max(1))
    assert from_arrays({}) is None
    short = from_arrays({**arrays, "z": arrays["z"][:10]})
    assert short is not None and short.z is None and "z" in short.missing
    assert pred.mapping == {}  # no labels, no mapping


def test_predictions_mapping_is_the_hungarian_one_and_computed_once() -> None:
    arrays = fabricate_predictions(300, num_clusters=6, seed=4)
    pred = from_arrays(arrays)
    assert pred is not None and pred.mapping == hungarian_mapping(pred.label, pred.cluster)
    assert pred.mapping is pred.mapping  # cached on the object the studio caches per file
    conf = confusion.aligned_confusion(pred.label, pred.cluster, pred.num_clusters, pred.mapping)
    assert conf.mapping is pred.mapping


# ------------------------------------------------------------------------------ curves


def test_curves_from_metrics_rows(tmp_path: Path) -> None:
    run = fabricate_run(tmp_path / "r", n=30, epochs=6, torn_metrics=True)
    rows = read_metrics(run)
    assert len(rows) == 6  # the torn line is skipped
    assert curves.loss_parts(rows) == ["loss", "loss_ins", "loss_clu"]
    df = curves.metrics_frame(rows, "r")
    assert "cluster_sizes" not in df and (df["run"] == "r").all() and "minutes" in df
    long = curves.long_frame([df, curves.metrics_frame(rows, "s")], ["acc", "nmi", "missing"], "epoch")
    assert set(long["series"]) == {"acc", "nmi"} and set(long["run"]) == {"r", "s"} and len(long) == 24
    x, sizes = curves.sizes_matrix(rows + [{"epoch": 7, "cluster_sizes": [1, 2]}, {"epoch": 8}])
    assert sizes.shape == (7, 10) and x[-1] == 7 and sizes[-1, :2].tolist() == [1, 2]
    assert curves.metrics_frame([], "r").empty


def test_degeneracy_note() -> None:
    assert "largest cluster" in curves.degeneracy_note([{"cluster_sizes": [90, 5, 5, 0]}])
    assert curves.degeneracy_note([{"cluster_sizes": [25, 25, 25, 25]}]) is None
    assert "non-empty" in curves.degeneracy_note([{"cluster_sizes": [40, 40, 0, 0, 0, 0]}])
    assert curves.degeneracy_note([]) is None


# ------------------------------------------------------------------------------ confusion


def test_aligned_confusion_puts_the_mapping_on_the_diagonal() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    clusters = np.array([2, 2, 1, 0, 0, 1, 1, 1, 3])  # cluster 3 is surplus, cluster 4 empty
    conf = confusion.aligned_confusion(labels, clusters, num_clusters=5)
    assert conf.mapping == hungarian_mapping(labels, clusters) == {2: 0, 0: 1, 1: 2}
    assert conf.row_clusters.tolist()[:3] == [2, 0, 1]
    assert conf.row_clusters.tolist()[3:] == [3, 4]  # unmapped: largest first, the empty one last
    assert np.diag(conf.counts[:3]).tolist() == [2, 2, 3]
    assert conf.accuracy == pytest.approx(accuracy(labels, clusters))
    norm = conf.normalized()
    assert np.allclose(norm[:4].sum(1), 1) and norm[4].sum() == 0
    table = confusion.cluster_table(conf, ["zero", "one", "two"])
    assert table.loc[0, "mapped class"] == "zero" and table.loc[3, "mapped class"] == "(unmapped)"
    assert table.loc[0, "purity"] == pytest.approx(1.0) and table.loc[2, "precision"] == pytest.approx(0.75)
    assert confusion.mapping_table(conf, ["zero", "one", "two"])["class"].tolist() == ["zero", "one", "two"]
    assert confusion.cell_indices(clusters, labels, 1, 2).tolist() == [5, 6, 7]


def test_confusion_accuracy_matches_metrics_on_synthetic_run() -> None:
    p = fabricate_predictions(2000, num_clusters=10, seed=3)
    conf = confusion.aligned_confusion(p["label"], p["cluster"], 10)
    assert conf.accuracy == pytest.approx(accuracy(p["label"], p["cluster"]))
    assert conf.counts.sum() == 2000


def test_sizes_table_without_labels() -> None:
    df = confusion.sizes_table(np.array([0, 0, 2]), np.array([0.5, 1.0, 0.2]), 4)
    assert df["size"].tolist() == [2, 0, 1, 0]
    assert df["mean confidence"][0] == pytest.approx(0.75) and np.isnan(df["mean confidence"][1])


# ------------------------------------------------------------------------------ failures


def test_failure_selection_matches_accuracy() -> None:
    p = fabricate_predictions(1500, seed=1)
    mapping = hungarian_mapping(p["label"], p["cluster"])
    fails = failures.failure_indices(p["cluster"], p["label"], mapping)
    assert len(fails) == round((1 - accuracy(p["label"], p["cluster"])) * 1500)
    by_class = failures.failures_by_class(p["cluster"], p["label"], p["confidence"], mapping)
    assert sum(len(v) for v in by_class.values()) == len(fails)
    for cls, idx in by_class.items():
        assert (p["label"][idx] == cls).all()
        assert (np.diff(p["confidence"][idx]) <= 0).all()  # most confident first
    narrowed = failures.failures_by_class(p["cluster"], p["label"], p["confidence"], mapping, (0.0, 0.5))
    assert all((p["confidence"][v] <= 0.5).all() for v in narrowed.values())


def test_confused_pairs_and_unmapped_clusters() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    clusters = np.array([0, 0, 0, 1, 1, 1, 1, 2])  # one 0 in cluster 1 (-> class 1), one 1 in surplus 2
    mapping = hungarian_mapping(labels, clusters)
    pairs = failures.confused_pairs(clusters, labels, mapping, ["a", "b"])
    assert set(zip(pairs["true class"], pairs["assigned as"], strict=True)) == {
        ("a", "b"),
        ("b", "(unmapped cluster)"),
    }
    assert pairs["share of class"].tolist() == [0.25, 0.25]
    assert failures.confused_pairs(labels, labels, {0: 0, 1: 1}, ["a", "b"]).empty


def test_cluster_members_low_confidence_and_disagreements() -> None:
    clusters = np.array([1, 1, 0, 1])
    conf = np.array([0.2, 0.9, 0.5, 0.6])
    assert failures.cluster_members(clusters, conf, 1).tolist() == [1, 3, 0]
    assert failures.cluster_members(clusters, conf, 1, (0.5, 1.0)).tolist() == [1, 3]
    assert failures.low_confidence(conf, 2).tolist() == [0, 2]
    assert failures.community_disagreements(
        np.array([1, 2, 3]), np.array([1, 0, 3]), np.array([7, 8, 9])
    ).tolist() == [8]


# ------------------------------------------------------------------------------ graph statistics


def _toy_sample() -> graphstats.GraphSample:
    # Two tight groups of 3 (labels 0 and 1) plus an outlier; the groups point apart.
    z = np.array(
        [[1, 0, 0], [0.99, 0.1, 0], [0.98, 0, 0.1], [-1, 0, 0], [-0.99, 0.1, 0], [-0.98, 0, 0.1], [0, 0, 1]],
        dtype=np.float32,
    )
    probs = np.array([[0.9, 0.1]] * 3 + [[0.2, 0.8]] * 3 + [[0.5, 0.5]], dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 0])
    return graphstats.build_sample(z, probs, labels, np.arange(7))


def test_graph_stats_on_a_toy_graph() -> None:
    sample = _toy_sample()
    stats = graphstats.graph_stats(sample, pos_conf=0.5, k=2)
    assert stats.peers.tolist() == [2, 2, 2, 2, 2, 2, 0]
    assert stats.share_with_peer == pytest.approx(6 / 7)
    assert stats.hop_peers[0] == pytest.approx(12 / 7) and stats.hop_peers[1] == 0
    assert stats.hop_precision[0] == pytest.approx(1.0) and stats.hop_precision[1] is None
    assert stats.neg_peers[0] == 3  # the opposite group
    assert stats.agreement == pytest.approx(1.0) and stats.acc_community == pytest.approx(stats.acc_own)


def test_hop_sets_follow_a_chain() -> None:
    angles = np.linspace(0, 1.2, 5)  # neighbours ~0.3 rad apart: only adjacent ones above 0.9
    z = np.stack([np.cos(angles), np.sin(angles), np.zeros(5)], 1).astype(np.float32)
    sample = graphstats.build_sample(
        z, np.full((5, 2), 0.5, np.float32), np.array([0, 0, 1, 1, 1]), np.arange(5)
    )
    stats = graphstats.graph_stats(sample, pos_conf=0.9, k=3)
    assert stats.peers.tolist() == [1, 2, 2, 2, 1]
    assert stats.hop_peers == pytest.approx([8 / 5, 6 / 5, 4 / 5])
    hops, negatives = graphstats.peers_of(sample, z[0], 0.9, 3, exclude=0)
    assert [[p.position for p in h] for h in hops] == [[1], [2], [3]]
    assert negatives == []
    assert graphstats.hop_counts(sample, z[0], 0.9, 4, exclude=0) == [1, 1, 1, 1]


def test_fused_assignment_agrees_with_the_trainers_graph() -> None:
    p = fabricate_predictions(300, seed=5)
    sample = graphstats.build_sample(p["z"], p["probs"], p["label"], np.arange(300))
    for k in (1, 2, 3):
        expected, _ = community_assignments(sample.z, sample.y, 0.258, 0.0, k)
        stats = graphstats.graph_stats(sample, 0.258, k)
        assert (stats.community == expected.argmax(1).numpy()).all()


def test_peer_counts_match_brute_force() -> None:
    p = fabricate_predictions(400, seed=2)
    sample = graphstats.build_sample(p["z"], p["probs"], p["label"], graphstats.sample_positions(400, 256, 0))
    z = sample.z.numpy()
    sim = z @ z.T
    brute = (sim > 0.3).sum(1) - 1
    stats = graphstats.graph_stats(sample, 0.3, 1, max_anchors=1000)
    assert np.array_equal(stats.peers, brute)
    same = (sample.labels[:, None] == sample.labels[None, :]) & (sim > 0.3) & ~np.eye(256, dtype=bool)
    assert stats.hop_precision[0] == pytest.approx(same.sum() / brute.sum(), abs=1e-6)


def test_graph_settings_come_from_the_run_then_uccc_defaults() -> None:
    from clustering.methods.uccc import UCCCParams

    default = graphstats.GraphSettings.of({})
    assert (default.tolerance, default.pos_conf, default.khop) == (UCCCParams().tolerance, None, UCCCParams().khop)
    assert default.threshold(10) == pytest.approx(0.258)
    run = graphstats.GraphSettings.of({"tolerance": 2.0, "khop": 3, "pos_conf": None, "neg_conf": -0.1})
    assert (run.threshold(10), run.khop, run.neg_conf) == (pytest.approx(0.6), 3, -0.1)
    assert graphstats.GraphSettings.of({"pos_conf": 0.42}).threshold(10) == 0.42
    assert graphstats.GraphSettings.of({"khop": None}).khop == UCCCParams().khop  # a CC run's config


def test_resolve_threshold_and_sampling() -> None:
    assert graphstats.resolve_threshold(10, 4.0) == pytest.approx(0.258)  # the paper's Table 1
    assert graphstats.resolve_threshold(10, 2.0) == pytest.approx(0.6)
    assert graphstats.resolve_threshold(10, None, 0.42) == 0.42
    assert graphstats.resolve_threshold(4, 4.0) == 0.0  # the trainer's: 1 - 2t / C has none at C <= t
    with pytest.raises(ValueError):
        graphstats.resolve_threshold(4, 5.0)
    with pytest.raises(ValueError):
        graphstats.resolve_threshold(10, None, 1.5)
    s = graphstats.sample_positions(10_000, 2048, 0)
    assert len(np.unique(s)) == 2048 and (np.diff(s) > 0).all()
    assert graphstats.sample_positions(100, 2048).tolist() == list(range(100))


def test_peers_of_an_image_outside_the_sample() -> None:
    sample = _toy_sample()
    hops, negatives = graphstats.peers_of(sample, np.array([1.0, 0.05, 0.0]), 0.5, 2)
    assert sorted(p.position for p in hops[0]) == [0, 1, 2]
    assert hops[0][0].similarity >= hops[0][-1].similarity
    assert [p.position for p in negatives][:1] in ([3], [4], [5])
    assert all(p.similarity < 0 for p in negatives)


# ------------------------------------------------------------------------------ projections


def test_cache_key_depends_on_predictions_and_relevant_params() -> None:
    fp = {"size": 10, "mtime_ns": 1}
    base = projection.ProjectionParams(method="tsne")
    key = projection.cache_key(fp, base)
    assert key == projection.cache_key(dict(fp), projection.ProjectionParams(method="tsne"))
    assert key != projection.cache_key({"size": 10, "mtime_ns": 2}, base)
    assert key != projection.cache_key(fp, projection.ProjectionParams(method="tsne", perplexity=10))
    assert key != projection.cache_key(fp, projection.ProjectionParams(method="tsne", subsample=None))
    assert key != projection.cache_key(fp, projection.ProjectionParams(method="tsne", source="h"))
    # t-SNE ignores UMAP's knobs (and vice versa): no needless recomputation
    assert key == projection.cache_key(fp, projection.ProjectionParams(method="tsne", n_neighbors=50))
    umap = projection.ProjectionParams(method="umap")
    assert projection.cache_key(fp, umap) == projection.cache_key(
        fp, projection.ProjectionParams(method="umap", perplexity=5)
    )


def test_projection_computed_once_then_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake(features: np.ndarray, params: projection.ProjectionParams) -> np.ndarray:
        calls.append(len(features))
        return np.asarray(features[:, :2], dtype=np.float32)

    monkeypatch.setattr(projection, "compute", fake)
    feats = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    params = projection.ProjectionParams(subsample=40)
    fp = {"size": 1, "mtime_ns": 1}
    pos1, c1, hit1 = projection.load_or_compute(tmp_path, fp, feats, params)
    pos2, c2, hit2 = projection.load_or_compute(tmp_path, fp, feats, params)
    assert (hit1, hit2) == (False, True) and calls == [40]
    assert np.array_equal(pos1, pos2) and np.array_equal(c1, c2) and len(np.unique(pos1)) == 40
    projection.cache_file(tmp_path, projection.cache_key(fp, params)).write_bytes(b"torn")
    _, _, hit3 = projection.load_or_compute(tmp_path, fp, feats, params)
    assert not hit3 and calls == [40, 40]


def test_projection_real_methods_on_tiny_data() -> None:
    feats = fabricate_predictions(80, seed=4)["z"].astype(np.float32)
    for method in ("tsne", "umap"):
        coords = projection.compute(feats, projection.ProjectionParams(method=method, n_neighbors=10))
        assert coords.shape == (80, 2) and np.isfinite(coords).all()
    with pytest.raises(ValueError):
        projection.compute(feats, projection.ProjectionParams(method="pca"))


# ------------------------------------------------------------------------------ selection


def test_points_to_positions() -> None:
    points = [
        {"curve_number": 0, "point_index": 1, "customdata": [42]},
        {"customdata": 7},
        {"curve_number": 1, "point_index": 0},
        {"curve_number": 0, "point_index": 0, "customdata": [42]},
        {"curve_number": 5, "point_index": 0},
    ]
    traces = [np.array([10, 11]), np.array([20])]
    assert selection.points_to_positions(points, traces).tolist() == [7, 20, 42]
    assert selection.points_to_positions(points).tolist() == [7, 42]
    assert selection.points_to_positions([]).size == 0


def test_selection_points_and_export() -> None:
    event = {"selection": {"points": [{"customdata": [1]}], "box": [], "lasso": []}}
    assert selection.selection_points(event) == [{"customdata": [1]}]
    assert selection.selection_points(None) == []

    class Attr:
        selection = type("S", (), {"points": [{"customdata": 2}]})()

    assert selection.selection_points(Attr()) == [{"customdata": 2}]
    df = selection.export_frame(
        np.array([2, 0]),
        np.array([10, 11, 12]),
        np.array([1, 0, 1]),
        np.array([0.5, 0.25, 0.125]),
        np.array([3, 1, 0]),
        ["a", "b", "c", "d"],
    )
    assert df["index"].tolist() == [12, 10] and df["class"].tolist() == ["a", "d"]
    assert selection.to_csv(df).decode().splitlines()[0] == "index,cluster,confidence,label,class"
    no_labels = selection.export_frame(np.array([0]), np.arange(3), np.zeros(3), np.ones(3), None, [])
    assert "label" not in no_labels


# ------------------------------------------------------------------------------ images


def test_upscale_and_thumbnails() -> None:
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    big = images.upscale(gray, 64)
    assert big.shape == (64, 64) and big[7, 7] == gray[0, 0, 0] and big[8, 8] == gray[1, 1, 0]
    rgb = np.zeros((32, 32, 3), np.uint8)
    assert images.upscale(rgb, 64).shape == (64, 64, 3)
    assert images.upscale(np.zeros((96, 96, 3), np.uint8), 64).shape == (96, 96, 3)  # never shrinks
    data = np.stack([np.full((4, 4, 1), i, np.uint8) for i in range(5)])
    thumbs = images.thumbnails(data, np.array([0, 1]), np.array([4, 2, 0]), target=8)
    assert [t[0, 0] for t in thumbs] == [4, 2] and thumbs[0].shape == (8, 8)


def test_load_data_view() -> None:
    view = images.load_data_view("digits", None, "both", 16)
    assert view.has_images and view.images.shape == (1797, 16, 16, 1) and view.class_names[3] == "3"
    missing = images.load_data_view("mnist-test", "/nonexistent/data", "both", None)
    assert not missing.has_images and "cannot be loaded" in missing.problem
    assert "missing" in images.load_data_view(None, None, None, None).problem


def test_fabricated_run_reads_like_a_real_one(tmp_path: Path) -> None:
    run = fabricate_run(tmp_path / "r", n=40, state="running", alive_pid=True, torn_metrics=True)
    summary = summarize_run(run)
    assert summary.state == "running" and summary.method == "uccc" and summary.best_acc is not None
    stale = fabricate_run(tmp_path / "s", n=40, state="running")
    assert summarize_run(stale).state == "stale"


def test_runs_frame_copes_with_torn_runs(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "ok", n=20)
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "config.json").write_text('{"method": "uc')
    refs = runsdir.discover_runs(tmp_path, None)
    df = runsdir.runs_frame(refs)
    assert set(df["run"]) == {"ok", "torn"}
    row = df.set_index("run").loc["torn"]
    assert row["status"] == "unknown" and row["duration"] == "" and pd.isna(row["started"])
    assert df.set_index("run").loc["ok", "duration"] != ""
    assert runsdir.runs_frame([]).empty


def test_customdata_shapes_reported_by_streamlit() -> None:
    # 2-D customdata arrives as a dict keyed "0", "1" (seen in Chromium), 1-D as a scalar.
    assert selection.custom_values({"customdata": {"1": 7, "0": 3}}) == [3, 7]
    assert selection.custom_values({"customdata": 5}) == [5]
    assert selection.custom_values({}) == []
    points = [
        {"customdata": {"0": 1, "1": 2}},
        {"customdata": [0, 4]},
        {"customdata": {"0": 1, "1": 2}},
        {"customdata": 9},
        {"x": 1},
    ]
    assert selection.selected_cells(points) == [(0, 4), (1, 2)]
    assert selection.points_to_positions([{"customdata": {"0": 12}}]).tolist() == [12]


def test_reap_collects_finished_trainers(tmp_path: Path) -> None:
    pid = launch.spawn([sys.executable, "-c", "pass"], tmp_path, "quick")
    deadline = time.time() + 20
    while time.time() < deadline and launch.reap() > 0:
        time.sleep(0.1)
    assert launch.reap() == 0
    assert not runsdir.pid_alive(pid)  # reaped, not a zombie that looks alive


def test_scatter_map_carries_positions_for_selections() -> None:
    from app.logic import map_figures

    positions = np.array([4, 0, 2])
    info = map_figures.point_info(positions, np.arange(10, 20), np.arange(5) % 2, np.linspace(0, 1, 5), None)
    assert (
        info[:, 0].tolist() == [4, 0, 2] and info[:, 1].tolist() == [14, 10, 12] and (info[:, 3] == -1).all()
    )
    coords = np.zeros((3, 2), np.float32)
    fig = map_figures.scatter_map(
        coords, info, np.array([0, 0, 1]), {0: "a", 1: "b"}, None, "t", has_labels=False
    )
    assert [t.name for t in fig.data] == ["a", "b"] and fig.data[0].type == "scattergl"
    # what a lasso reports (customdata rows) maps back to the sample positions
    points = [{"customdata": {str(i): v for i, v in enumerate(row)}} for row in fig.data[0].customdata]
    assert selection.points_to_positions(points).tolist() == [0, 4]
    assert "label" not in fig.data[0].hovertemplate
    continuous = map_figures.scatter_map(coords, info, None, {}, np.array([0.1, 0.5, 0.9]), "t")
    assert len(continuous.data) == 1 and continuous.data[0].marker.showscale


def test_scatter_map_of_many_clusters_is_one_trace_coloured_per_point() -> None:
    from app.logic import figures, map_figures

    n, k = 2000, 200
    groups = np.arange(n) % k
    info = map_figures.point_info(np.arange(n), np.arange(n), groups, np.full(n, 0.5), groups)
    fig = map_figures.scatter_map(np.random.default_rng(0).normal(size=(n, 2)), info, groups,
                              {g: f"cluster {g}" for g in range(k)}, None, "t")  # fmt: skip
    assert len(fig.data) == 1 and fig.data[0].type == "scattergl" and not fig.data[0].showlegend
    marker = fig.data[0].marker
    scale = [tuple(step) for step in marker.colorscale]

    def colour(value: float) -> str:  # what plotly draws for a value: its step of the scale
        t = (value - marker.cmin) / (marker.cmax - marker.cmin)
        return next(c for (lo, c), (hi, _) in zip(scale[::2], scale[1::2], strict=True) if lo <= t < hi)

    colours = np.array([colour(v) for v in np.asarray(marker.color)])
    # Same cluster, same colour; the first PALETTE-many clusters all differ.
    assert all(len(set(colours[groups == g])) == 1 for g in range(k))
    assert len({colours[g] for g in range(len(figures.PALETTE))}) == len(figures.PALETTE)
    assert colours[0] == figures.color_of(0) and colours[k - 1] == figures.color_of(k - 1)
    assert (np.asarray(fig.data[0].customdata)[:, 0] == np.arange(n)).all()  # selections still map back
    few = map_figures.scatter_map(np.zeros((n, 2)), info, groups % 10, {g: str(g) for g in range(10)}, None, "t")
    assert len(few.data) == 10  # up to MAX_LEGEND_GROUPS: one trace per cluster, legend toggles


def test_load_data_view_of_vectors_passes_the_trainers_options(tmp_path: Path) -> None:
    path = tmp_path / "features.npy"
    np.save(path, np.zeros((30, 4), np.float32))
    view = images.load_data_view("vectors", str(path), "both", None, num_clusters=3)
    assert view.kind == "vector" and not view.has_images and "vectors, not images" in view.problem


def test_graph_launch_trains_the_runs_method_only_when_it_has_the_graph_parameters() -> None:
    assert launch.graph_method("uccc") == "uccc"
    assert launch.graph_method("cc") == "uccc"  # CC has no community graph
    assert launch.graph_method("no-such-method") == "uccc" and launch.graph_method(None) == "uccc"


def test_pages_import_only_the_studio_logic_and_the_run_directory_reader() -> None:
    import ast

    allowed = ("app.logic", "app.ui", "clustering.runs")
    for page in (Path(__file__).parents[1] / "app" / "views").glob("*.py"):
        for node in ast.walk(ast.parse(page.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("app", "clustering"):
                assert node.module.startswith(allowed), f"{page.name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("clustering") for a in node.names), page.name


def test_top_confused_cells_skip_the_diagonal_largest_first() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    clusters = np.array([5, 5, 7, 7, 7, 5, 6, 6, 7, 5])  # 5 -> class 0, 7 -> 1, 6 -> 2
    conf = confusion.aligned_confusion(labels, clusters, 8)
    cells = confusion.top_confused_cells(conf, 10)
    named = [(int(conf.row_clusters[r]), int(conf.col_classes[c]), k) for r, c, k in cells]
    # off-diagonal: cluster 5 holds one of class 1 and one of class 2; cluster 7 one of 0 and one of 2
    assert sorted(named) == [(5, 1, 1), (5, 2, 1), (7, 0, 1), (7, 2, 1)]
    assert all(k > 0 for _, _, k in cells)


def test_a_200_class_confusion_figure_stays_light() -> None:
    from app.logic import figures

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 200, 20_000)
    clusters = np.where(rng.random(20_000) < 0.8, labels, rng.integers(0, 200, 20_000))
    conf = confusion.aligned_confusion(labels, clusters, 200)
    names = [str(i) for i in range(200)]
    fig = figures.confusion_figure(conf.counts, names, names, normalized=False)
    heat, markers = fig.data
    assert heat.text is None and markers.type == "scatter"  # SVG: 2,000 markers need no WebGL context
    # the heatmap hovers every cell from its category axes; markers sit on the largest cells only
    assert list(heat.x) == names and list(heat.y) == names and "%{z}" in heat.hovertemplate
    assert np.count_nonzero(conf.counts) > figures.CONFUSION_CLICK_CELLS == len(markers.x)
    clicked = {(int(r), int(c)) for r, c in markers.customdata}
    assert all(conf.counts[r, c] >= np.sort(conf.counts, axis=None)[-figures.CONFUSION_CLICK_CELLS]
               for r, c in clicked)  # fmt: skip
    assert {(r, r) for r in range(200)} <= clicked  # every diagonal cell (80% of each class) takes clicks
    r, c = next(iter(clicked))
    i = [tuple(map(int, cd)) for cd in markers.customdata].index((r, c))
    assert (markers.x[i], markers.y[i]) == (names[c], names[r])  # the marker sits on its own cell
    assert fig.layout.height == 1000 and fig.layout.yaxis.showticklabels is False
    assert len(fig.to_json()) < 600_000  # it was 1.6 MB with a marker and string per non-empty cell
    # equal labels stay separate rows (a category axis would merge them)
    twins = figures.confusion_figure(conf.counts, ["same"] * 200, names, normalized=True)
    assert len(set(twins.data[0].y)) == 200 and twins.data[0].z.dtype == np.float32
    small = figures.confusion_figure(conf.counts[:10, :10], names[:10], names[:10], normalized=False)
    assert small.data[0].text is not None and len(small.data[1].x) == 100
