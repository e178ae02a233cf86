"""NT-Xent and UCCC's Eq. 6 against independent naive loops of the papers' equations."""

from __future__ import annotations

import math

import pytest
import torch

from clustering.losses import nt_xent, uccc_cluster_loss


def naive_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> float:
    """UCCC Eq. 1-2 written as loops, positive kept in the denominator (DESIGN.md), mean over 2N."""
    rows = [v / v.norm() for v in list(z_a.double()) + list(z_b.double())]
    n = len(z_a)
    total = 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        num = math.exp(float(rows[i] @ rows[partner]) / tau)
        den = sum(math.exp(float(rows[i] @ rows[j]) / tau) for j in range(2 * n) if j != i)
        total += -math.log(num / den)
    return total / (2 * n)


def naive_uccc(y_pos: torch.Tensor, y_neg: torch.Tensor, cosine: bool = False, tau: float = 1.0) -> float:
    """Eq. 6 as loops over i and over Phi = {(i, j, m, n)}."""
    yp, yn = y_pos.double(), y_neg.double()
    if cosine:
        yp = yp / yp.norm(dim=1, keepdim=True).clamp_min(1e-12)
        yn = yn / yn.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = len(yp) // 2
    view = {"a": 0, "b": n}
    num = sum(math.exp((float(yp[i] @ yp[n + i]) + float(yn[i] @ yn[n + i])) / tau) for i in range(n))
    den = 0.0
    for i in range(n):
        for j in range(n):
            for m in "ab":
                for k in "ab":
                    den += math.exp(float(yp[view[m] + i] @ yn[view[k] + j]) / tau)
    return -math.log(num / den)


@pytest.mark.parametrize("n,d,tau", [(2, 3, 0.5), (5, 8, 0.1), (7, 4, 1.0), (16, 32, 0.5)])
def test_nt_xent_matches_naive_loop(n: int, d: int, tau: float) -> None:
    g = torch.Generator().manual_seed(n * 100 + d)
    z_a, z_b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    assert nt_xent(z_a, z_b, tau).item() == pytest.approx(naive_nt_xent(z_a, z_b, tau), rel=1e-5)


def test_nt_xent_is_invariant_to_scale_and_symmetric() -> None:
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ref = nt_xent(z_a, z_b)
    assert nt_xent(3 * z_a, 0.5 * z_b).item() == pytest.approx(ref.item(), rel=1e-5)
    assert nt_xent(z_b, z_a).item() == pytest.approx(ref.item(), rel=1e-5)


def test_nt_xent_hand_computed_aligned_orthogonal_pairs() -> None:
    # N = 2, views identical, the two samples orthogonal: for each anchor s(pos) = 1 and the
    # two negatives have s = 0, so l = -log(e^(1/tau) / (e^(1/tau) + 2)).
    z = torch.eye(2)
    tau = 0.5
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))
    assert nt_xent(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_prefers_aligned_views() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 16, generator=g)
    aligned = nt_xent(z, z + 0.01 * torch.randn(8, 16, generator=g))
    shuffled = nt_xent(z, z[torch.randperm(8, generator=g)])
    assert aligned < shuffled


@pytest.mark.parametrize("bad", [(torch.randn(4, 3), torch.randn(5, 3)), (torch.randn(1, 3), torch.randn(1, 3))])
def test_nt_xent_rejects_bad_shapes(bad: tuple[torch.Tensor, torch.Tensor]) -> None:
    with pytest.raises(ValueError):
        nt_xent(*bad)


@pytest.mark.parametrize("n,c", [(1, 2), (3, 4), (6, 10), (10, 3)])
@pytest.mark.parametrize("cosine,tau", [(False, 1.0), (True, 0.3), (True, 1.0), (False, 0.5)])
def test_uccc_cluster_loss_matches_naive_loop(n: int, c: int, cosine: bool, tau: float) -> None:
    g = torch.Generator().manual_seed(n * 10 + c)
    y_pos = torch.rand(2 * n, c, generator=g)
    y_neg = torch.rand(2 * n, c, generator=g)
    got = uccc_cluster_loss(y_pos, y_neg, cosine=cosine, temperature=tau).item()
    assert got == pytest.approx(naive_uccc(y_pos, y_neg, cosine, tau), rel=1e-5, abs=1e-6)


def test_uccc_cluster_loss_hand_computed_equal_assignments() -> None:
    # y_pos == y_neg == one constant row u for every view: every exponent is u.u = |u|^2,
    # numerator terms are exp(2|u|^2) (N of them), denominator 4N^2 terms exp(|u|^2):
    # L = -log(N e^{2s} / (4 N^2 e^{s})) = log(4N) - s with s = |u|^2.
    n, u = 3, torch.tensor([0.5, 0.3, 0.2])
    y = u.repeat(2 * n, 1)
    s = float(u @ u)
    assert uccc_cluster_loss(y, y.clone()).item() == pytest.approx(math.log(4 * n) - s, rel=1e-6)


def test_uccc_literal_collapse_scores_log4n_minus_one() -> None:
    # The degeneracy the issue describes: a total collapse onto one-hot rows scores log(4N) - 1.
    n = 128
    y = torch.zeros(2 * n, 10)
    y[:, 0] = 1.0
    assert uccc_cluster_loss(y, y.clone()).item() == pytest.approx(math.log(4 * n) - 1, rel=1e-6)


def test_uccc_cluster_loss_is_finite_for_zero_negative_rows() -> None:
    # Rows with no negative peers are all-zero after normalisation; the loss must stay finite.
    y_pos = torch.rand(8, 4)
    y_neg = torch.zeros(8, 4)
    for cosine in (False, True):
        loss = uccc_cluster_loss(y_pos, y_neg, cosine=cosine, temperature=0.5)
        assert torch.isfinite(loss)


def test_uccc_cluster_loss_gradient_flows_to_both_inputs() -> None:
    y_pos = torch.rand(6, 3, requires_grad=True)
    y_neg = torch.rand(6, 3, requires_grad=True)
    uccc_cluster_loss(y_pos, y_neg, cosine=True, temperature=0.3).backward()
    assert y_pos.grad is not None and y_pos.grad.abs().sum() > 0
    assert y_neg.grad is not None and y_neg.grad.abs().sum() > 0


def test_uccc_cluster_loss_rejects_odd_rows_and_bad_temperature() -> None:
    with pytest.raises(ValueError, match="2N rows"):
        uccc_cluster_loss(torch.rand(5, 3), torch.rand(5, 3))
    with pytest.raises(ValueError, match="temperature"):
        uccc_cluster_loss(torch.rand(4, 3), torch.rand(4, 3), temperature=0.0)
