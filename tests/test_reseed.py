"""Re-seeding empty clusters (clustering.reseed): the split keeps every other cluster's probability,
shares the big cluster's mass between its two halves, and happens only at the end of a window."""

from __future__ import annotations

import math

import torch
from torch import nn

from clustering.reseed import EmptyClusterReseeder, last_linear


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
