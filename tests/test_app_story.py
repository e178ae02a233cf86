"""The run story (history.bin -> sizes, churn, flows, per-image histories) and run-vs-run
comparison, on hand-made histories whose answers are counted by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.logic import compare, story  # noqa: E402
from clustering.history import HistoryWriter, RunHistory, read_history  # noqa: E402

# 4 evaluations of 6 images. Image 0 never moves; image 5 moves at every evaluation.
CLUSTERS = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 1],
        [0, 1, 1, 2, 2, 0],
        [0, 1, 1, 2, 2, 2],
    ]
)


@pytest.fixture
def history(tmp_path: Path) -> RunHistory:
    writer = HistoryWriter(tmp_path, 6)
    for e, row in enumerate(CLUSTERS):
        writer.append(10 * (e + 1), e + 1, row, np.full(6, 0.25 * (e + 1)))
    loaded = read_history(tmp_path)
    assert loaded is not None
    return loaded


def test_sizes_and_churn(history: RunHistory) -> None:
    sizes = story.sizes_over_time(history, 3)
    assert sizes.tolist() == [[6, 0, 0], [3, 3, 0], [2, 2, 2], [1, 2, 3]]
    np.testing.assert_allclose(story.churn(history), [3 / 6, 3 / 6, 1 / 6])


def test_sample_history_flips_and_settling(history: RunHistory) -> None:
    s = story.sample_history(history)
    assert s.flips.tolist() == [0, 1, 1, 1, 1, 3]
    # the evaluation from which each image kept its final cluster
    assert s.settled_eval.tolist() == [0, 1, 1, 2, 2, 3]
    assert s.final_cluster.tolist() == CLUSTERS[-1].tolist()
    np.testing.assert_allclose(s.mean_confidence, np.full(6, (0.25 + 0.5 + 0.75 + 1.0) / 4))
    np.testing.assert_allclose(story.settled_curve(s, 4), [1 / 6, 3 / 6, 5 / 6, 1.0])
    assert story.most_unstable(s, 2).tolist()[0] == 5


def test_flow_counts_and_links(history: RunHistory) -> None:
    moved = story.flow(history, 1, 2, max_links=3)
    # eval 1 -> 2: 0->0 (images 0), 1->1 (1, 2), 0->2 (3, 4), 1->0 (5)
    assert moved.counts[0, 0] == 1 and moved.counts[1, 1] == 2 and moved.counts[0, 2] == 2 and moved.counts[1, 0] == 1
    assert moved.counts.sum() == 6 and moved.stayed == pytest.approx(3 / 6)
    assert moved.links["samples"].tolist() == [2, 2, 1] and moved.links.attrs["other"] == 1
    majority = story.cluster_majority(CLUSTERS[3], np.array([5, 7, 7, 9, 9, 9]), 4)
    assert majority == [5, 7, 9, None]
    traj = story.trajectory(history, 5)
    assert traj["cluster"].tolist() == [0, 1, 0, 2] and traj["epoch"].tolist() == [1, 2, 3, 4]


def test_compare_runs_aligns_renamed_clusters() -> None:
    a = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    b = np.array([5, 5, 5, 3, 3, 0, 0, 0])  # A's 0 is B's 5, 1 is 3, 2 is 0; image 5 disputed
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])  # ... and B is right on it
    result = compare.compare_runs(a, b, labels)
    assert result.b_to_a == {5: 0, 3: 1, 0: 2}
    assert result.disagree.tolist() == [5] and result.agreement == pytest.approx(7 / 8)
    assert result.col_clusters.tolist() == [5, 3, 0]
    assert result.counts.tolist() == [[3, 0, 0], [0, 2, 1], [0, 0, 2]]
    assert result.verdict_counts() == {"only A right": 0, "only B right": 1, "both right": 0, "both wrong": 0}


def test_identical_runs_agree_fully_and_unlabelled_data_has_no_verdicts() -> None:
    a = np.array([2, 2, 0, 1, 1])
    result = compare.compare_runs(a, a.copy(), np.full(5, -1))
    assert result.agreement == 1.0 and result.nmi == pytest.approx(1.0) and len(result.disagree) == 0
    assert result.verdict_counts() == {}


def test_runs_of_different_data_are_refused_with_the_sizes() -> None:
    with pytest.raises(compare.IncomparableRuns, match="5 samples against 4"):
        compare.compare_runs(np.zeros(5), np.zeros(4))
