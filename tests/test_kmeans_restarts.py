"""The end-of-run k-means restarts against the head's partition (``clustering.kmeans_restarts``)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from test_split_merge import groups, head_writing, naive_objective, same_partition

from clustering.head_refit import refit_head
from clustering.kmeans import spherical_kmeans
from clustering.kmeans_restarts import best_of_restarts, kmeans_plus_plus, match_ids
from clustering.split_merge import objective


def evened(truth: torch.Tensor) -> torch.Tensor:
    """What a uniform prior makes of groups of 300 / 60 / 60: the large one in two clusters (its
    rows alternating), the two small ones sharing the third."""
    labels = truth.clone()
    labels[truth == 2] = 1
    big = torch.nonzero(truth == 0).flatten()
    labels[big[1::2]] = 2
    return labels


def unit(rows: torch.Tensor) -> torch.Tensor:
    return F.normalize(rows.double(), dim=1)


def test_kmeans_plus_plus_seeds_one_centre_in_each_separate_group() -> None:
    h, truth = groups([50, 30, 20], nonnegative=True, noise=0.05)
    for seed in range(5):
        seeded = kmeans_plus_plus(unit(h), 3, torch.Generator().manual_seed(seed))
        assert same_partition(seeded, truth)


def test_kmeans_plus_plus_needs_as_many_rows_as_clusters_and_copes_with_identical_rows() -> None:
    with pytest.raises(ValueError, match=r"as many rows \(2\) as clusters \(3\)"):
        kmeans_plus_plus(unit(torch.rand(2, 4)), 3, torch.Generator())
    same = kmeans_plus_plus(unit(torch.ones(6, 4)), 2, torch.Generator().manual_seed(0))
    assert same.shape == (6,) and set(same.tolist()) <= {0, 1}


def test_match_ids_renames_clusters_to_overlap_the_reference_most() -> None:
    reference = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    labels = torch.tensor([2, 2, 1, 0, 0, 1, 1, 1, 0])  # the same clusters, mostly, under other ids
    matched = match_ids(labels, reference, 3)
    assert same_partition(matched, labels)

    def overlap(ids: torch.Tensor) -> int:
        return int((ids == reference).sum())

    best = max(overlap(torch.tensor(p)[labels]) for p in itertools.permutations(range(3)))
    assert overlap(matched) == best == 7


def test_a_restart_replaces_an_evened_partition_by_the_groups() -> None:
    h, truth = groups([300, 60, 60], nonnegative=True)
    x = unit(h)
    _, own, _ = spherical_kmeans(x, evened(truth), 3)  # Lloyd keeps it evened: a local optimum
    shared = set(own[truth > 0].tolist())
    assert len(shared) == 1 and len(set(own[truth == 0].tolist()) - shared) == 2
    won, notes = best_of_restarts(h, own, 3, restarts=5, generator=torch.Generator().manual_seed(0))
    assert won is not None and same_partition(won, truth)
    assert notes["restarts_won"] == 1.0
    gain = naive_objective(h.numpy(), truth.numpy()) / naive_objective(h.numpy(), own.numpy()) - 1
    assert notes["restarts_gain"] == pytest.approx(gain) and gain > 0.05
    # Only a gain above the margin replaces the partition.
    assert best_of_restarts(h, own, 3, restarts=5, generator=torch.Generator().manual_seed(0), margin=2 * gain)[0] \
        is None  # fmt: skip
    # The ids follow the head's: the small groups keep the id of the cluster they shared where they can.
    assert int((won == own).sum()) == max(int((torch.tensor(p)[won] == own).sum())
                                          for p in itertools.permutations(range(3)))  # fmt: skip


def test_a_partition_that_is_already_the_best_is_kept() -> None:
    h, truth = groups([300, 60, 60], nonnegative=True)
    won, notes = best_of_restarts(h, truth, 3, restarts=5, generator=torch.Generator().manual_seed(0))
    assert won is None and notes["restarts_won"] == 0.0 and notes["restarts_gain"] <= 1e-12
    assert objective(unit(h), truth, 3) == pytest.approx(naive_objective(h.numpy(), truth.numpy()))
    with pytest.raises(ValueError, match="restarts must be >= 1, got 0"):
        best_of_restarts(h, truth, 3, restarts=0, generator=torch.Generator())


def test_refit_head_writes_a_winning_restart_into_the_head_and_leaves_a_losing_one_out() -> None:
    h, truth = groups([300, 60, 60], nonnegative=True)
    head = head_writing(evened(truth), h, 3)
    notes = refit_head(head, h, lloyd=False, restarts=5, generator=torch.Generator().manual_seed(1))
    assert notes["restarts_won"] == 1.0 and 0 < notes["refit_moved"] < 1
    assert same_partition(head(h).argmax(dim=1), truth)

    settled = head_writing(truth, h, 3)
    before = {k: v.clone() for k, v in settled.state_dict().items()}
    notes = refit_head(settled, h, lloyd=False, restarts=5)
    assert notes["restarts_won"] == 0.0 and "refit_moved" not in notes  # nothing rewritten
    assert all(torch.equal(before[k], v) for k, v in settled.state_dict().items())


def test_the_methods_with_a_uniform_prior_get_restarts_without_umap_gmm_and_a_flag_overrides(tmp_path) -> None:  # noqa: ANN001
    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.data_defaults import KMEANS_RESTARTS
    from clustering.errors import ConfigError
    from clustering.methods import get_method, method_names
    from clustering.setup import resolve_config

    assert {n for n in method_names() if get_method(n).uniform_prior} == {"cc", "sacc", "gcc"}
    data = load_dataset("digits", image_size=12)
    for method, expected in (("cc", KMEANS_RESTARTS), ("sacc", KMEANS_RESTARTS), ("gcc", KMEANS_RESTARTS),
                             ("uccc", 0)):  # fmt: skip
        chosen = resolve_config(TrainConfig(method=method, dataset="digits", umap_gmm=False), data, "cpu")
        assert chosen.kmeans_restarts == expected and chosen.data_defaults["kmeans_restarts"]["value"] == expected
    assert "uniform prior" in resolve_config(TrainConfig(method="sacc", dataset="digits", umap_gmm=False), data,
                                             "cpu").data_defaults["kmeans_restarts"]["reason"]  # fmt: skip
    assert resolve_config(TrainConfig(method="sacc", dataset="digits"), data, "cpu").kmeans_restarts == 0  # UMAP + GMM
    asked = resolve_config(TrainConfig(method="uccc", dataset="digits", kmeans_restarts=3), data, "cpu")
    assert asked.kmeans_restarts == 3 and "kmeans_restarts" not in asked.data_defaults
    assert resolve_config(TrainConfig(method="cc", dataset="digits", kmeans_restarts=0), data, "cpu") \
        .kmeans_restarts == 0  # fmt: skip
    lnscc = resolve_config(TrainConfig(method="lnscc", dataset="digits"), data, "cpu")
    assert lnscc.kmeans_restarts == 0 and "kmeans_restarts" not in lnscc.data_defaults
    with pytest.raises(ConfigError, match="kmeans_restarts rewrites the two-layer softmax cluster head; 'lnscc'"):
        resolve_config(TrainConfig(method="lnscc", dataset="digits", kmeans_restarts=3), data, "cpu")
    with pytest.raises(ConfigError, match="kmeans_restarts"):
        resolve_config(TrainConfig(method="cc", dataset="digits", kmeans_restarts=-1), data, "cpu")


def test_a_finished_run_logs_the_restarts_and_eval_reproduces_them(tmp_path) -> None:  # noqa: ANN001
    """The end of a CC run (restarts on by default) against the same training without them, and
    ``eval --kmeans-restarts`` of that one: the same clusters, from the run's seed."""
    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.evaluation import evaluate_run
    from clustering.runs import read_metrics, read_predictions
    from clustering.train import train

    data = load_dataset("digits", image_size=12)

    def run(run_id: str, restarts: int | None) -> object:
        return train(TrainConfig(method="cc", dataset="digits", image_size=12, batch_size=256, out=str(tmp_path),
                                 seed=4, threads=2, projections="none", max_steps=3, amp="off", refit_head=False,
                                 split_merge=False, kmeans_restarts=restarts, umap_gmm=False, run_id=run_id),
                     progress=False, data=data)  # fmt: skip

    kept, restarted = run("kept", 0), run("restarted", None)
    config = json.loads((restarted.run_dir / "config.json").read_text())
    assert config["kmeans_restarts"] == 10 and config["data_defaults"]["kmeans_restarts"]["value"] == 10
    kept_row, row = read_metrics(kept.run_dir)[-1], read_metrics(restarted.run_dir)[-1]
    assert "restarts_won" not in kept_row
    assert row["restarts_won"] == 1.0 and row["restarts_gain"] > 0  # three steps leave a poor partition
    assert row["acc_as_trained"] == pytest.approx(kept_row["acc"])
    before, after = read_predictions(kept.run_dir), read_predictions(restarted.run_dir)
    assert torch.equal(torch.from_numpy(before["h"]), torch.from_numpy(after["h"]))
    assert evaluate_run(restarted.run_dir, which="last")["acc"] == pytest.approx(row["acc"])
    late = evaluate_run(kept.run_dir, which="last", kmeans_restarts=10)
    assert late["restarts_won"] == 1.0 and late["acc"] == pytest.approx(row["acc"])
    assert late["as_trained"]["acc"] == pytest.approx(kept_row["acc"])
