"""Re-seeding empty clusters (clustering.reseed): the split keeps every other cluster's probability,
shares the big cluster's mass between its two halves, and happens only at the end of a window."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from clustering.reseed import EmptyClusterReseeder, fill_empty_clusters, last_linear, reseed_at_end


def head(num_clusters: int = 4, features: int = 8) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(features, features), nn.ReLU(), nn.Linear(features, num_clusters))


def one_hot_probs(assigned: list[int], num_clusters: int = 4) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(assigned), num_clusters).float()


def test_nothing_changes_before_the_window_is_full() -> None:
    model, reseeder = head(), EmptyClusterReseeder(4, window=10)
    before = [p.clone() for p in model.parameters()]
    reseeder.observe(one_hot_probs([0] * 6))  # 6 of 10 images: the window is not full
    assert reseeder.step(model) == []
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert int(reseeder.seen) == 6 and reseeder.counts.tolist() == [6, 0, 0, 0]


def test_empty_clusters_take_halves_of_the_largest_and_the_rest_is_unchanged() -> None:
    model, reseeder = head(), EmptyClusterReseeder(4, window=10)
    # cluster 0 holds 7 images, cluster 1 holds 3, clusters 2 and 3 none
    reseeder.observe(one_hot_probs([0] * 7 + [1] * 3))
    x = torch.randn(64, 8)
    before = model(x)
    pairs = reseeder.step(model)
    assert pairs == [(2, 0), (3, 1)]  # the largest donor to the first empty cluster, and so on
    after = model(x)
    # the halves' logits are the donor's -log 2 -/+ delta.h: their mean is exact
    for target, donor in pairs:
        torch.testing.assert_close((after[:, donor] + after[:, target]) / 2, before[:, donor] - math.log(2))
        # and they differ, so the donor's images split between them
        assert (after[:, donor] > after[:, target]).any() and (after[:, donor] < after[:, target]).any()
    # no other logit moves (here every cluster took part; see the next test)
    assert int(reseeder.reseeds) == 2 and int(reseeder.seen) == 0 and reseeder.counts.sum() == 0


def test_only_the_empty_and_the_donor_rows_change() -> None:
    model, reseeder = head(num_clusters=5), EmptyClusterReseeder(5, window=6)
    reseeder.observe(one_hot_probs([0, 0, 0, 1, 3, 4], num_clusters=5))  # cluster 2 is empty
    before = last_linear(model).weight.clone(), last_linear(model).bias.clone()
    assert reseeder.step(model) == [(2, 0)]
    weight, bias = last_linear(model).weight, last_linear(model).bias
    for untouched in (1, 3, 4):
        assert torch.equal(weight[untouched], before[0][untouched]) and bias[untouched] == before[1][untouched]
    torch.testing.assert_close(weight[0] + weight[2], 2 * before[0][0])


def test_a_full_window_with_every_cluster_used_changes_nothing() -> None:
    model, reseeder = head(), EmptyClusterReseeder(4, window=8)
    before = last_linear(model).weight.clone()
    reseeder.observe(one_hot_probs([0, 1, 2, 3, 0, 1, 2, 3]))
    assert reseeder.step(model) == []
    assert torch.equal(last_linear(model).weight, before)


def test_the_split_is_the_same_in_every_process() -> None:
    # Under DDP every rank observes the same gathered rows; the perturbation must not depend on
    # a per-rank random stream, or the replicas' heads would drift apart.
    heads = [head(), head()]
    for model in heads:
        reseeder = EmptyClusterReseeder(4, window=4)
        torch.manual_seed(len(heads))  # a different global stream must not matter
        reseeder.observe(one_hot_probs([0, 0, 1, 1]))
        reseeder.step(model)
    for a, b in zip(heads[0].parameters(), heads[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_window_state_is_in_the_checkpoint() -> None:
    reseeder = EmptyClusterReseeder(4, window=10)
    reseeder.observe(one_hot_probs([1, 1, 3]))
    state = reseeder.state_dict()
    resumed = EmptyClusterReseeder(4, window=10)
    resumed.load_state_dict(state)
    assert resumed.counts.tolist() == [0, 2, 0, 1] and int(resumed.seen) == 3


def test_a_donor_of_two_groups_is_split_between_them() -> None:
    """Bisecting k-means's split: the principal direction of the donor's members separates two
    groups of them exactly, where a random direction would cut across both."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 3)
    head = nn.Sequential(layer)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([20.0, 0.0, 0.0]))  # everything in cluster 0
    group_a = torch.randn(20, 6) * 0.1 + torch.tensor([2.0, 0, 0, 0, 0, 0])
    group_b = torch.randn(20, 6) * 0.1 - torch.tensor([2.0, 0, 0, 0, 0, 0])
    h = torch.cat([group_a, group_b])
    reseeder = EmptyClusterReseeder(3, window=40, feature_dim=6)
    reseeder.observe(head(h).softmax(dim=1), h, head)
    assert reseeder.step(head) == [(1, 0)]
    chosen = head(h).argmax(dim=1)
    assert len(set(chosen[:20].tolist())) == 1 and len(set(chosen[20:].tolist())) == 1
    assert set(chosen.tolist()) == {0, 1}


def three_groups_in_one_cluster() -> tuple[nn.Sequential, torch.Tensor]:
    torch.manual_seed(0)
    layer = nn.Linear(6, 3)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([20.0, 0.0, 0.0]))  # every image in cluster 0
    centres = torch.tensor([[3.0, 0, 0, 0, 0, 0], [-3.0, 0, 0, 0, 0, 0], [0, 3.0, 0, 0, 0, 0]])
    h = torch.cat([torch.randn(20, 6) * 0.1 + c for c in centres])
    return nn.Sequential(layer), h


def test_fill_empty_clusters_repeats_until_every_cluster_has_images() -> None:
    """Two empty clusters and one donor of three groups: the first round splits the donor into one
    empty cluster, the second the larger half into the other, each split along its members'
    principal direction, so every group ends in a cluster of its own."""
    model, h = three_groups_in_one_cluster()
    assert model(h).argmax(dim=1).unique().tolist() == [0]
    assert fill_empty_clusters(model, h) == 2
    chosen = model(h).argmax(dim=1)
    groups = [set(chosen[i : i + 20].tolist()) for i in (0, 20, 40)]
    assert all(len(g) == 1 for g in groups), groups
    assert set.union(*groups) == {0, 1, 2}


def test_fill_empty_clusters_leaves_a_head_without_empty_clusters_alone() -> None:
    model, h = three_groups_in_one_cluster()
    fill_empty_clusters(model, h)
    before = [p.clone() for p in model.parameters()]
    model.train()
    assert fill_empty_clusters(model, h) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert model.training  # the head's mode is restored


def test_fill_empty_clusters_stops_when_no_cluster_can_give() -> None:
    """One image and three clusters: no donor has two members to split, so nothing changes."""
    model, h = three_groups_in_one_cluster()
    assert fill_empty_clusters(model, h[:1]) == 0


def test_fill_empty_clusters_refuses_a_split_that_leaves_fewer_clusters_with_images() -> None:
    """Cluster 0 holds two groups at x = -1 and x = +1, cluster 1 two images at (5, 0), cluster 3
    two at (4, 3), cluster 2 none. Splitting cluster 0 along x gives cluster 2 the row (1, 0) with
    bias 10 - log 2, which beats cluster 1 at (5, 0) (14.3 against 12.5) and cluster 3 at (4, 3)
    (13.3 against 12): one cluster gained, two lost. With only that donor allowed nothing changes;
    with more, whatever is kept leaves at least as many clusters with images as before."""
    torch.manual_seed(0)
    layer = nn.Linear(2, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 0.0], [2.5, 0.0], [0.0, 0.0], [0.0, 4.0]]))
        layer.bias.copy_(torch.tensor([10.0, 0.0, -100.0, 0.0]))
    model = nn.Sequential(layer)
    points = [(-1.0, 0.0)] * 20 + [(1.0, 0.0)] * 20 + [(5.0, 0.0)] * 2 + [(4.0, 3.0)] * 2
    h = torch.tensor(points) + torch.randn(44, 2) * 0.05
    assert model(h).argmax(dim=1).tolist() == [0] * 40 + [1, 1, 3, 3]
    before = [p.clone() for p in model.parameters()]
    assert fill_empty_clusters(model, h, donors_per_cluster=1) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    fill_empty_clusters(model, h)
    assert len(model(h).argmax(dim=1).unique()) >= 3


def test_reseed_at_end_checks_with_the_runs_own_embedding() -> None:
    """Off (no re-seeder, or ``final`` false): nothing is computed. On: the embedding the run's last
    evaluation uses decides whether clusters are empty, and is asked again after a fill."""
    model, h = three_groups_in_one_cluster()
    calls: list[int] = []

    def embed() -> dict[str, np.ndarray]:
        calls.append(1)
        with torch.no_grad():
            return {"probs": model(h).softmax(dim=1).numpy(), "h": h.numpy()}

    reseeder = EmptyClusterReseeder(3, window=60, feature_dim=6)
    assert reseed_at_end(None, True, model, embed) == {} and reseed_at_end(reseeder, False, model, embed) == {}
    assert calls == []
    assert reseed_at_end(reseeder, True, model, embed) == {"final_reseeds": 2.0}
    assert len(calls) == 2  # filled, then checked: every cluster has images
    assert reseed_at_end(reseeder, True, model, embed) == {"final_reseeds": 0.0} and len(calls) == 3


def test_the_two_column_update_decides_as_the_whole_head_does() -> None:
    """The plain head's shortcut (only the two changed logit columns are recomputed) keeps exactly
    the splits that recomputing the whole head keeps (a head with a layer after its last Linear
    takes that path)."""
    import copy

    torch.manual_seed(1)
    centres = torch.randn(6, 8) * 3
    h = torch.cat([c + torch.randn(30, 8) * 0.5 for c in centres])
    plain = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 6))
    with torch.no_grad():
        plain[2].bias.copy_(torch.tensor([8.0, 6.0, -50.0, -50.0, -50.0, 0.0]))
    whole = nn.Sequential(*copy.deepcopy(list(plain.children())), nn.Identity())
    assert len(plain(h).argmax(dim=1).unique()) < 6
    assert fill_empty_clusters(plain, h) == fill_empty_clusters(whole, h) > 0
    torch.testing.assert_close(plain[2].weight, whole[2].weight)
    torch.testing.assert_close(plain[2].bias, whole[2].bias)
    assert len(plain(h).argmax(dim=1).unique()) == 6
