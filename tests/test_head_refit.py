"""The end-of-run head refit: spherical k-means from the head's partition, written into the head."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from clustering.head_refit import refit_head, refittable, spherical_kmeans
from clustering.models.heads import mlp_head


def naive_spherical_kmeans(x: np.ndarray, labels: list[int], k: int, iterations: int = 100) -> list[int]:
    """Lloyd's iterations on the cosine, one row and one cluster at a time (no empty clusters)."""
    rows = [np.array(v) / math.sqrt(sum(t * t for t in v)) for v in x.tolist()]
    for _ in range(iterations):
        centroids = []
        for c in range(k):
            total = sum((rows[i] for i in range(len(rows)) if labels[i] == c), np.zeros(len(rows[0])))
            centroids.append(total / math.sqrt(float(total @ total)))
        new = [max(range(k), key=lambda c, r=r: float(r @ centroids[c])) for r in rows]
        if new == labels:
            break
        labels = new
    return labels


def test_spherical_kmeans_matches_a_naive_lloyd() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6)) * 1.5  # overlapping groups: several iterations
    x = np.concatenate([c + rng.normal(size=(15, 6)) for c in centres])
    start = np.repeat(np.arange(4), 15)
    noisy = rng.random(len(x)) < 0.4
    start[noisy] = rng.integers(0, 4, size=int(noisy.sum()))
    _, labels, iterations = spherical_kmeans(torch.from_numpy(x), torch.from_numpy(start), 4)
    expected = naive_spherical_kmeans(x, start.tolist(), 4)
    assert labels.tolist() == expected and len(set(expected)) == 4
    assert 2 <= iterations < 100 and labels.tolist() != start.tolist()  # it moved rows, then converged


def test_by_hand_an_image_on_the_wrong_side_moves_to_its_centroid() -> None:
    # (1, 0) alone in cluster 0; (1, 0.2) with the two near (0, 1) in cluster 1. Cluster 1's centroid
    # is the normalised sum of its three unit rows, about (0.476, 0.880): cosine 0.639 with (1, 0.2)
    # against 0.981 with cluster 0's (1, 0), so (1, 0.2) moves, and then nothing else does.
    x = torch.tensor([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0], [0.2, 1.0]])
    centroids, labels, iterations = spherical_kmeans(x, torch.tensor([0, 1, 1, 1]), 2)
    assert labels.tolist() == [0, 0, 1, 1] and iterations == 2
    unit = torch.nn.functional.normalize(x.double(), dim=1)
    expected = torch.nn.functional.normalize(torch.stack([unit[0] + unit[1], unit[2] + unit[3]]), dim=1)
    assert torch.allclose(centroids, expected)
    # The lengths of the rows do not matter, only their directions.
    _, scaled, _ = spherical_kmeans(x * torch.tensor([[5.0], [0.1], [2.0], [30.0]]), torch.tensor([0, 1, 1, 1]), 2)
    assert scaled.tolist() == [0, 0, 1, 1]


def test_clusters_that_start_empty_take_the_worst_fitting_rows() -> None:
    # Three tight groups, all started in cluster 0: the fill gives clusters 1 and 2 the rows least like
    # cluster 0's centroid, and Lloyd's iterations recover the groups, every cluster with rows.
    rng = np.random.default_rng(1)
    groups = [np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])]
    x = np.concatenate([g + 0.05 * rng.random((10, 3)) for g in groups])
    _, labels, _ = spherical_kmeans(torch.from_numpy(x), torch.zeros(30, dtype=torch.long), 3)
    found = labels.numpy().reshape(3, 10)
    assert all(len(set(row)) == 1 for row in found) and len({row[0] for row in found}) == 3


def separable_features(n_per: int = 30, k: int = 5, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.random((k, dim)) * 4
    h = np.concatenate([np.abs(c + rng.normal(scale=0.6, size=(n_per, dim))) for c in centres])
    return torch.from_numpy(h).float(), np.repeat(np.arange(k), n_per)


def test_refit_writes_the_nearest_centroid_rule_into_the_head_and_keeps_its_confidence() -> None:
    torch.manual_seed(0)
    h, _ = separable_features()
    head = mlp_head(16, 5)
    with torch.no_grad():
        before_logits = head(h)
    before = before_logits.argmax(dim=1)
    confidence = float(before_logits.softmax(dim=1).amax(dim=1).mean())
    notes = refit_head(head, h)
    centroids, labels, iterations = spherical_kmeans(h, before, 5)
    with torch.no_grad():
        after_logits = head(h)
    assert torch.equal(after_logits.argmax(dim=1), labels)  # the head now decides as the centroids do
    assert float(after_logits.softmax(dim=1).amax(dim=1).mean()) == pytest.approx(confidence, abs=1e-3)
    assert torch.equal(head[0].weight, torch.eye(16)) and not head[0].bias.any()
    assert notes == {"refit_moved": pytest.approx(float((labels != before).float().mean())),
                     "refit_iterations": float(iterations)}  # fmt: skip
    assert head.training  # left in the mode it was in


def test_a_partition_with_a_quarter_of_its_images_misplaced_is_repaired() -> None:
    """What the refit is for: a head whose boundaries put some images with the wrong cluster, not one
    that merged two groups (Lloyd's iterations keep the start's clusters, they do not re-found them)."""
    from clustering.metrics import accuracy

    h, y = separable_features(seed=3)
    rng = np.random.default_rng(3)
    start = y.copy()
    wrong = rng.random(len(y)) < 0.25
    start[wrong] = (y[wrong] + rng.integers(1, 5, size=int(wrong.sum()))) % 5
    _, labels, _ = spherical_kmeans(h, torch.from_numpy(start), 5)
    assert accuracy(y, start) < 0.8 and accuracy(y, labels.numpy()) == 1.0
    assert np.array_equal(labels.numpy(), y)  # the clusters keep their identities (no relabelling)


def test_refit_refuses_what_it_cannot_express() -> None:
    h, _ = separable_features()
    with pytest.raises(ValueError, match="negative entries"):
        refit_head(mlp_head(16, 5), h - 1.0)
    narrow = mlp_head(16, 5, hidden=8)
    assert "hidden layer (8) is not as wide as its input (16)" in (refittable(narrow) or "")
    longer = nn.Sequential(*mlp_head(16, 5), nn.BatchNorm1d(5))
    assert "Linear, ReLU, Linear, BatchNorm1d" in (refittable(longer) or "")
    with pytest.raises(TypeError, match="not Linear-ReLU-Linear"):
        refit_head(longer, h)
    assert refittable(mlp_head(16, 5)) is None


def test_lnscc_keeps_its_own_head_and_eval_refuses_to_refit_it(tmp_path) -> None:  # noqa: ANN001
    from clustering.config import TrainConfig
    from clustering.errors import ConfigError
    from clustering.evaluation import evaluate_run
    from clustering.train import train

    # 40 clusters of 1,797 images would turn the refit on for a softmax head; LNSCC has none.
    run = train(TrainConfig(method="lnscc", dataset="digits", num_clusters=40, max_steps=1, batch_size=64,
                            out=str(tmp_path), run_id="ln", threads=1, projections="none"), progress=False)  # fmt: skip
    config = json.loads((run.run_dir / "config.json").read_text())
    assert config["refit_head"] is False and "refit_head" not in config["data_defaults"]
    assert run.state == "finished" and "refit_moved" not in run.metrics
    with pytest.raises(ConfigError, match="cannot refit the head of .*not Linear-ReLU-Linear"):
        evaluate_run(run.run_dir, which="last", refit_head=True)
