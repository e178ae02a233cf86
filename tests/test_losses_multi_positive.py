"""Multi-positive NT-Xent (SupCon's form) against a naive loop, NT-Xent and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from clustering.losses import multi_positive_nt_xent, neighbor_positives, nt_xent


def naive_multi_positive(z: torch.Tensor, positives: torch.Tensor, tau: float) -> float:
    """SupCon's L_out as loops: for each anchor with positives, the mean over them of
    -log(exp(s_ip / tau) / sum_{j != i} exp(s_ij / tau)); then the mean over those anchors."""
    rows = [v / v.norm() for v in z.double()]
    m = len(rows)
    losses = []
    for i in range(m):
        pos = [p for p in range(m) if p != i and bool(positives[i, p])]
        if not pos:
            continue
        den = sum(math.exp(float(rows[i] @ rows[j]) / tau) for j in range(m) if j != i)
        losses.append(sum(-math.log(math.exp(float(rows[i] @ rows[p]) / tau) / den) for p in pos) / len(pos))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("m,d,tau,density", [(4, 3, 0.5, 0.5), (9, 8, 0.1, 0.3), (16, 5, 1.0, 0.2), (12, 4, 0.5, 0.9)])
def test_multi_positive_matches_naive_loop(m: int, d: int, tau: float, density: float) -> None:
    g = torch.Generator().manual_seed(m * 10 + d)
    z = torch.randn(m, d, generator=g)
    positives = torch.rand(m, m, generator=g) < density  # not symmetric, diagonal set at random too
    positives[0] = False  # one anchor without positives: left out of the mean
    positives[0, 0] = True  # its diagonal alone does not count
    assert multi_positive_nt_xent(z, positives, tau).item() == pytest.approx(naive_multi_positive(z, positives, tau),
                                                                             rel=1e-5)  # fmt: skip


def test_multi_positive_with_the_partner_view_alone_is_nt_xent() -> None:
    g = torch.Generator().manual_seed(3)
    n = 7
    z_a, z_b = torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    positives = torch.zeros(2 * n, 2 * n, dtype=torch.bool)
    positives[torch.arange(2 * n), partner] = True
    got = multi_positive_nt_xent(torch.cat([z_a, z_b]), positives, 0.5)
    assert got.item() == pytest.approx(nt_xent(z_a, z_b, 0.5).item(), rel=1e-6)


def test_multi_positive_hand_computed() -> None:
    # rows e1, e1, e2 at tau = 1: anchor 0 sees s = 1 (row 1) and s = 0 (row 2), positives {1, 2}:
    # -(1/2)[log(e / (e + 1)) + log(1 / (e + 1))] = log(e + 1) - 1/2; anchor 1 the same with {0, 2};
    # anchor 2 sees s = 0 twice, positive {0}: log 2.
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[False, True, True], [True, False, True], [True, False, False]])
    expected = (2 * (math.log(math.e + 1) - 0.5) + math.log(2)) / 3
    assert multi_positive_nt_xent(z, positives, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_multi_positive_gradient_and_no_positive_case() -> None:
    z = torch.randn(6, 4, requires_grad=True)
    loss = multi_positive_nt_xent(z, torch.eye(6, dtype=torch.bool), 0.5)  # only diagonals: nothing to learn
    assert loss.item() == 0.0
    loss.backward()
    assert z.grad is not None and torch.equal(z.grad, torch.zeros_like(z))
    z.grad = None
    positives = torch.zeros(6, 6, dtype=torch.bool)
    positives[0, 1] = positives[1, 0] = True
    multi_positive_nt_xent(z, positives, 0.5).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_multi_positive_refuses_bad_input() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="boolean"):
        multi_positive_nt_xent(z, torch.ones(4, 4), 0.5)
    with pytest.raises(ValueError, match=r"\(M, M\)"):
        multi_positive_nt_xent(z, torch.ones(3, 3, dtype=torch.bool), 0.5)
    with pytest.raises(ValueError, match="temperature"):
        multi_positive_nt_xent(z, torch.ones(4, 4, dtype=torch.bool), 0.0)


def test_neighbor_positives_hand_computed() -> None:
    # data set of 5 images; image 0's neighbour is 1, 1's is 2, 2's is 0, 3's is 4, 4's is 3
    table = torch.tensor([[1], [2], [0], [4], [3]])
    sources = torch.tensor([0, 3, 0, 2, 4])  # five views: of images 0, 3, 0, 2, 4
    got = neighbor_positives(sources, table)
    expected = torch.tensor([
        [1, 0, 1, 1, 0],  # view of 0: the other view of 0, and the view of 2 (2's neighbour is 0)
        [0, 1, 0, 0, 1],  # view of 3: the view of 4 (each is the other's neighbour)
        [1, 0, 1, 1, 0],
        [1, 0, 1, 1, 0],
        [0, 1, 0, 0, 1],
    ], dtype=torch.bool)  # fmt: skip
    assert torch.equal(got, expected) and torch.equal(got, got.T)
