"""Split-and-merge moves (clustering.split_merge) and their place at the end of a run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clustering.head_refit import refit_head
from clustering.kmeans import spherical_kmeans
from clustering.split_merge import MARGIN, bisect, objective, split_merge


def naive_objective(x: np.ndarray, labels: np.ndarray) -> float:
    """Each row's cosine to its cluster's mean direction, summed (the spherical k-means objective)."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    total = 0.0
    for k in np.unique(labels):
        rows = x[labels == k]
        centre = rows.sum(axis=0) / np.linalg.norm(rows.sum(axis=0))
        total += float((rows @ centre).sum())
    return total


def groups(sizes: list[int], dim: int = 16, noise: float = 0.1, seed: int = 0,
           nonnegative: bool = False) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Rows around one random direction per group (near-orthogonal in ``dim``), and each row's group.
    ``nonnegative``: directions and rows in the positive orthant, as ReLU features are."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(len(sizes), dim, generator=g), dim=1)
    if nonnegative:  # each group on its own block of coordinates
        centres = torch.zeros(len(sizes), dim)
        for k, block in enumerate(torch.arange(dim).chunk(len(sizes))):
            centres[k, block] = 1.0
    truth = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    rows = centres[truth] + noise * torch.randn(len(truth), dim, generator=g)
    return (rows.abs() if nonnegative else rows), truth


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_the_objective_is_each_rows_cosine_to_its_centroid_summed() -> None:
    x, truth = groups([30, 20, 10], noise=0.5)
    labels = torch.randint(0, 3, (60,), generator=torch.Generator().manual_seed(1))
    assert objective(x, labels, 3) == pytest.approx(naive_objective(x.numpy(), labels.numpy()))
    assert objective(x, truth, 3) == pytest.approx(naive_objective(x.numpy(), truth.numpy()))
    # by hand: two unit rows at 90 degrees in one cluster give 2 cos 45 = sqrt(2); apart, 1 + 1
    two = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    assert objective(two, torch.tensor([0, 0, 1]), 3) == pytest.approx(math.sqrt(2) + 1)
    assert objective(two, torch.tensor([0, 1, 2]), 3) == pytest.approx(3.0)


def test_a_split_class_and_two_merged_classes_are_undone_in_one_move() -> None:
    """Class 0 (60 rows) over clusters 0 and 3, classes 2 and 3 (20 each) sharing cluster 2: the
    evened partition a balance term pulls towards. One move restores the classes."""
    x, truth = groups([60, 20, 20, 20])
    start = truth.clone()
    start[truth == 3] = 2
    start[:30] = 3
    labels, moves = split_merge(x, start, 4)
    assert same_partition(labels, truth)
    assert len(moves) == 1
    move = moves[0]
    assert move.split == 2 and set(move.merged) == {0, 3}
    # the move's figures are the objective's changes, computed naively
    merged = start.clone()
    merged[start == 3] = 0
    xd = x.double().numpy()
    assert move.cost == pytest.approx(naive_objective(xd, start.numpy()) - naive_objective(xd, merged.numpy()))
    parted = merged.clone()
    parted[truth == 3] = 3
    assert move.gain == pytest.approx(naive_objective(xd, parted.numpy()) - naive_objective(xd, merged.numpy()))
    assert objective(x, labels, 4) > objective(x, start, 4)


def test_the_move_chosen_is_the_best_of_every_split_and_merge() -> None:
    """Brute force over every cluster to split (by the same bisection) and every pair of other clusters
    to merge: the first move applied is the one with the largest net gain among those that pay."""
    x, truth = groups([50, 40, 12, 12, 12, 30], noise=0.25, seed=4)
    start = truth.clone()
    start[truth == 4] = 3  # two small classes in one cluster
    start[truth == 2] = 3  # and a third
    start[:25] = 2  # the first class over two clusters
    c = 6
    _, moves = split_merge(x, start, c, max_moves=1)
    xn = F.normalize(x.double(), dim=1)
    xd = x.double().numpy()
    best = None
    for d in range(c):
        members = torch.nonzero(start == d).flatten()
        side = bisect(xn[members])
        if side is None:
            continue
        parted = start.clone()
        parted[members[~side]] = -1
        gain = naive_objective(xd, parted.numpy()) - naive_objective(xd, start.numpy())
        for a, b in itertools.combinations([k for k in range(c) if k != d], 2):
            merged = start.clone()
            merged[start == b] = a
            cost = naive_objective(xd, start.numpy()) - naive_objective(xd, merged.numpy())
            net = gain - cost
            if gain > (1 + MARGIN / math.sqrt(len(members))) * cost and net > 0 and (best is None or net > best[0]):
                best = (net, d, {a, b})
    assert best is not None and len(moves) == 1
    assert (moves[0].split, set(moves[0].merged)) == (best[1], best[2])
    assert moves[0].gain - moves[0].cost == pytest.approx(best[0])


def test_a_partition_that_follows_the_groups_is_left_alone() -> None:
    x, truth = groups([80, 40, 20, 10], noise=0.2)
    labels, moves = split_merge(x, truth, 4)
    assert moves == [] and torch.equal(labels, truth)


def test_the_margin_keeps_a_cluster_of_few_rows_together_that_margin_zero_would_split() -> None:
    """A cluster of 12 rows from one noisy group: bisecting it gains something, more than merging two
    close groups costs, so with no margin the move is made; with the default margin it is not."""
    g = torch.Generator().manual_seed(2)
    base = F.normalize(torch.randn(3, 64, generator=g), dim=1)
    close = F.normalize(base[1] + 0.2 * F.normalize(torch.randn(64, generator=g), dim=0), dim=0)
    rows = [base[0] + torch.randn(12, 64, generator=g) / 8,  # one loose group of 12
            base[1] + 0.05 * torch.randn(40, 64, generator=g), close + 0.05 * torch.randn(40, 64, generator=g),
            base[2] + 0.05 * torch.randn(40, 64, generator=g)]
    x = torch.cat(rows)
    labels = torch.repeat_interleave(torch.arange(4), torch.tensor([12, 40, 40, 40]))
    _, greedy = split_merge(x, labels, 4, margin=0.0, max_moves=1)
    _, careful = split_merge(x, labels, 4)
    assert len(greedy) == 1 and greedy[0].split == 0  # the loose 12 are split: the objective rises...
    assert 1.0 < greedy[0].gain / greedy[0].cost < 1 + MARGIN / math.sqrt(12)  # ...by less than the margin asks
    assert careful == []


def test_an_empty_cluster_takes_the_second_half_of_a_split() -> None:
    """Merging an empty cluster costs nothing, so a cluster holding two groups is split into it."""
    x, truth = groups([30, 30, 30])
    start = truth.clone()
    start[truth == 2] = 1  # cluster 2 empty, cluster 1 holds two groups
    labels, moves = split_merge(x, start, 3)
    assert same_partition(labels, truth) and len(moves) == 1 and moves[0].cost == pytest.approx(0.0, abs=1e-9)


def test_bad_arguments_name_the_problem() -> None:
    x, truth = groups([10, 10])
    with pytest.raises(ValueError, match="at least 3 clusters"):
        split_merge(x, truth, 2)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        split_merge(x, truth, 3, margin=-1.0)
    assert bisect(torch.ones(1, 4)) is None and bisect(F.normalize(torch.ones(5, 4), dim=1)) is None


def mlp_head(width: int, clusters: int, seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, clusters))


def head_writing(labels: torch.Tensor, h: torch.Tensor, clusters: int) -> torch.nn.Sequential:
    """A head whose argmax on ``h`` is ``labels``: the refit's own form, centroids of the partition."""
    head = mlp_head(h.shape[1], clusters)
    centroids, _, _ = spherical_kmeans(h, labels, clusters, max_iterations=0)
    with torch.no_grad():
        head[0].weight.copy_(torch.eye(h.shape[1]))
        head[0].bias.zero_()
        head[2].weight.copy_(centroids.float() * 10)
        head[2].bias.zero_()
    return head


def test_the_head_is_rewritten_only_when_a_move_is_made() -> None:
    h, truth = groups([60, 20, 20, 20], nonnegative=True)  # backbone features end in a ReLU
    evened = truth.clone()
    evened[truth == 3] = 2
    evened[:30] = 3
    head = head_writing(evened, h, 4)
    assert not same_partition(head(h).argmax(dim=1), truth)
    notes = refit_head(head, h, lloyd=False, split_merge=True)
    assert notes["split_merge_moves"] == 1 and 0 < notes["refit_moved"] < 1
    assert same_partition(head(h).argmax(dim=1), truth)

    settled = head_writing(truth, h, 4)
    before = {k: v.clone() for k, v in settled.state_dict().items()}
    assert refit_head(settled, h, lloyd=False, split_merge=True) == {"split_merge_moves": 0.0}
    assert all(torch.equal(before[k], v) for k, v in settled.state_dict().items())


def test_a_finished_run_makes_the_moves_and_eval_of_a_run_without_them_gives_the_same(tmp_path) -> None:  # noqa: ANN001
    """The end of a run applies the moves (no refit here: refit_head off) and every output shows them;
    ``eval --split-merge`` of the same training made without them gives the same clusters."""
    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.evaluation import evaluate_run
    from clustering.runs import read_metrics, read_predictions
    from clustering.train import train

    data = load_dataset("digits", image_size=12)

    def run(run_id: str, split_merge: bool) -> object:
        return train(TrainConfig(method="uccc", dataset="digits", image_size=12, batch_size=256, out=str(tmp_path),
                                 seed=3, threads=2, projections="none", max_steps=3, amp="off", refit_head=False,
                                 split_merge=split_merge, umap_gmm=False, run_id=run_id),
                     progress=False, data=data)  # fmt: skip

    kept, moved = run("kept", False), run("moved", True)
    kept_row, row = read_metrics(kept.run_dir)[-1], read_metrics(moved.run_dir)[-1]
    assert "split_merge_moves" not in kept_row and "refit_moved" not in kept_row
    assert row["split_merge_moves"] >= 1 and 0 < row["refit_moved"] < 1  # three steps leave a poor partition
    assert row["acc_as_trained"] == pytest.approx(kept_row["acc"])
    before, after = read_predictions(kept.run_dir), read_predictions(moved.run_dir)
    assert np.array_equal(before["h"], after["h"]) and not np.array_equal(before["cluster"], after["cluster"])
    assert evaluate_run(moved.run_dir, which="last")["acc"] == pytest.approx(row["acc"])
    late = evaluate_run(kept.run_dir, which="last", split_merge=True)
    assert late["split_merge_moves"] == row["split_merge_moves"] and late["acc"] == pytest.approx(row["acc"])
    assert late["as_trained"]["acc"] == pytest.approx(kept_row["acc"])


def test_the_moves_are_on_from_three_clusters_and_refused_for_a_head_without_them(tmp_path) -> None:  # noqa: ANN001
    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.data_defaults import DataProfile, choose_split_merge
    from clustering.errors import ConfigError
    from clustering.setup import resolve_config

    assert choose_split_merge(DataProfile("image", 1, 28, 1000, 3)).value is True
    two = choose_split_merge(DataProfile("image", 1, 28, 1000, 2))
    assert two.value is False and "2 clusters" in two.reason
    data = load_dataset("digits", image_size=12)
    chosen = resolve_config(TrainConfig(method="sacc", dataset="digits", umap_gmm=False), data, "cpu")
    assert chosen.split_merge is True and "split_merge" in chosen.data_defaults
    assert resolve_config(TrainConfig(method="sacc", dataset="digits"), data, "cpu").split_merge is False  # UMAP + GMM
    assert resolve_config(TrainConfig(method="uccc", dataset="digits", split_merge=False), data, "cpu").split_merge \
        is False
    lnscc = resolve_config(TrainConfig(method="lnscc", dataset="digits"), data, "cpu")
    assert lnscc.split_merge is False and "split_merge" not in lnscc.data_defaults
    with pytest.raises(ConfigError, match="split_merge rewrites the two-layer softmax cluster head; 'lnscc'"):
        resolve_config(TrainConfig(method="lnscc", dataset="digits", split_merge=True), data, "cpu")
    with pytest.raises(ConfigError, match="split_merge needs at least 3 clusters.*this run has 2"):
        resolve_config(TrainConfig(method="uccc", dataset="digits", num_clusters=2, split_merge=True), data, "cpu")
    two_clusters = resolve_config(TrainConfig(method="uccc", dataset="digits", num_clusters=2), data, "cpu")
    assert two_clusters.split_merge is False and "2 clusters" in two_clusters.data_defaults["split_merge"]["reason"]
