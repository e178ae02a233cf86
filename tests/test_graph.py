"""Community graphs (UCCC Eq. 3-5) against dense explicit matrix powers."""

from __future__ import annotations

import pytest
import torch

from clustering.graph import community_assignments, positive_threshold


@pytest.mark.parametrize("c,expected", [(10, 0.258), (15, 0.484), (20, 0.615), (200, 0.961)])
def test_positive_threshold_uses_table_1(c: int, expected: float) -> None:
    assert positive_threshold(c) == expected


@pytest.mark.parametrize("c,t", [(12, 4.0), (50, 4.0), (10, 2.0), (10, 6.0), (100, 3.5)])
def test_positive_threshold_formula(c: int, t: float) -> None:
    assert positive_threshold(c, t) == pytest.approx(1 - 2 * t / c)


@pytest.mark.parametrize("c", [2, 3, 4])
def test_with_the_default_t_two_to_four_clusters_get_a_threshold_of_zero(c: int) -> None:
    # 1 - 8 / C is -3, -1.67 and -1 there: no threshold; 0 is the formula's value at C = 2t = 8.
    assert positive_threshold(c) == 0.0 and positive_threshold(8) == pytest.approx(0.0)
    assert positive_threshold(5) == pytest.approx(1 - 8 / 5)  # the formula again from C = 5


@pytest.mark.parametrize("c,t", [(4, 5.0), (2, 2.0), (10, 10.0), (3, 3.0)])
def test_positive_threshold_out_of_range_is_an_error(c: int, t: float) -> None:
    with pytest.raises(ValueError, match=r"not in \(-1, 1\)"):
        positive_threshold(c, t)


@pytest.mark.parametrize("c", [1, 0, -3])
def test_positive_threshold_needs_two_clusters(c: int) -> None:
    with pytest.raises(ValueError, match=">= 2"):
        positive_threshold(c)


def dense_reference(z: torch.Tensor, y: torch.Tensor, pos: float, neg: float, k: int):
    """Eq. 3-5 with explicit loops for A and explicit matrix powers."""
    m = len(z)
    zn = z.double() / z.double().norm(dim=1, keepdim=True)
    a_pos = torch.zeros(m, m, dtype=torch.float64)
    a_neg = torch.zeros(m, m, dtype=torch.float64)
    for i in range(m):
        for j in range(m):
            s = float(zn[i] @ zn[j])
            a_pos[i, j] = s if s > pos else 0.0
            a_neg[i, j] = -s if s < neg else 0.0

    def norm(a: torch.Tensor) -> torch.Tensor:
        d = a.sum(1)
        d_inv = torch.tensor([1 / v**0.5 if v > 0 else 0.0 for v in d.tolist()], dtype=torch.float64)
        return torch.diag(d_inv) @ a @ torch.diag(d_inv)

    ap, an = norm(a_pos), norm(a_neg)
    y = y.double()
    y_pos = torch.linalg.matrix_power(ap, k) @ y
    y_neg = an @ torch.linalg.matrix_power(ap, k - 1) @ y
    return y_pos, y_neg


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("pos", [0.258, 0.0, 0.6])
def test_community_assignments_match_dense_reference(k: int, pos: float) -> None:
    g = torch.Generator().manual_seed(k)
    z = torch.randn(12, 5, generator=g)
    y = torch.softmax(torch.randn(12, 4, generator=g), dim=1)
    got_pos, got_neg = community_assignments(z, y, pos, 0.0, k)
    ref_pos, ref_neg = dense_reference(z, y, pos, 0.0, k)
    torch.testing.assert_close(got_pos.double(), ref_pos, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_neg.double(), ref_neg, rtol=1e-5, atol=1e-6)


def test_rows_of_zero_degree_stay_zero() -> None:
    # Two identical embeddings and their negation: the negative graph has no entry for a row
    # whose similarities are all >= 0, so that row of Y_neg must be exactly zero (not NaN).
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.softmax(torch.randn(3, 3), dim=1)
    y_pos, y_neg = community_assignments(z, y, 0.5, 0.0, 2)
    assert torch.isfinite(y_pos).all() and torch.isfinite(y_neg).all()
    assert torch.equal(y_neg, torch.zeros_like(y_neg))


def test_permuting_the_batch_permutes_the_outputs() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(10, 6, generator=g)
    y = torch.softmax(torch.randn(10, 3, generator=g), dim=1)
    perm = torch.randperm(10, generator=g)
    y_pos, y_neg = community_assignments(z, y, 0.2, 0.0, 2)
    p_pos, p_neg = community_assignments(z[perm], y[perm], 0.2, 0.0, 2)
    torch.testing.assert_close(p_pos, y_pos[perm])
    torch.testing.assert_close(p_neg, y_neg[perm])


def test_no_gradient_reaches_z_through_the_graph() -> None:
    z = torch.randn(8, 4, requires_grad=True)
    logits = torch.randn(8, 3, requires_grad=True)
    y_pos, y_neg = community_assignments(z, logits.softmax(1), 0.1, 0.0, 2)
    (y_pos.sum() + (y_neg**2).sum()).backward()
    assert z.grad is None
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_community_assignments_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="k"):
        community_assignments(torch.randn(4, 2), torch.rand(4, 3), 0.2, k=0)
    with pytest.raises(ValueError, match="same number of rows"):
        community_assignments(torch.randn(4, 2), torch.rand(5, 3), 0.2)


def test_rank_graphs_give_every_view_its_nearest_fraction_as_peers() -> None:
    from clustering.graph import rank_graphs

    # Four tight groups of 5 rows on orthogonal axes: the 1/4 nearest rows of each row are its group.
    z = torch.eye(4).repeat_interleave(5, dim=0) + 0.01 * torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    group = torch.arange(20) // 5
    same = group[:, None] == group[None, :]
    a_pos, a_neg = rank_graphs(z, pos_fraction=0.25, neg_fraction=0.5)
    assert torch.equal(a_pos > 0, same)  # symmetric kNN graph = the groups, diagonal included
    assert not ((a_neg > 0) & same).any() and (a_neg > 0).sum(1).min() >= 10  # negatives only across groups
    torch.testing.assert_close(a_pos, a_pos.T)
    torch.testing.assert_close(a_pos.sum(1), torch.ones(20))  # D^-1/2 A D^-1/2 of a 5-regular block graph
