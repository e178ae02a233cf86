"""The seed methods' losses (CC, SACC, GCC, LNSCC) against naive loops over their equations,
plus hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from clustering.losses import (
    assignment_contrastive_loss,
    balance_loss,
    cc_cluster_loss,
    graph_contrastive_loss,
    self_training_loss,
    soft_contrastive_loss,
    target_distribution,
)

# ----------------------------------------------------------------------------- naive references


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a.double() @ b.double() / (a.double().norm() * b.double().norm()))


def naive_balance(p: torch.Tensor) -> float:
    n, c = p.shape
    total = sum(float(p[i, k]) for i in range(n) for k in range(c))
    h = 0.0
    for k in range(c):
        pk = sum(float(p[i, k]) for i in range(n)) / total
        if pk > 0:
            h -= pk * math.log(pk)
    return math.log(c) - h


def naive_cc_cluster(p_a: torch.Tensor, p_b: torch.Tensor, tau: float, entropy: bool) -> float:
    """CC Eq. 4-6 written out: 2M anchors, anchor excluded from its own denominator."""
    c = p_a.shape[1]
    cols = [p_a[:, k] for k in range(c)] + [p_b[:, k] for k in range(c)]
    total = 0.0
    for i in range(2 * c):
        pos = (i + c) % (2 * c)
        num = math.exp(_cos(cols[i], cols[pos]) / tau)
        den = sum(math.exp(_cos(cols[i], cols[j]) / tau) for j in range(2 * c) if j != i)
        total += -math.log(num / den)
    loss = total / (2 * c)
    if entropy:
        loss += naive_balance(p_a) + naive_balance(p_b)
    return loss


def naive_rgc(z: torch.Tensor, w: torch.Tensor, tau: float) -> float:
    """GCC Eq. 8 written out, rows without links or without non-links skipped."""
    m = z.shape[0]
    losses = []
    for u in range(m):
        num = sum(float(w[u, v]) * math.exp(_cos(z[u], z[v]) / tau) for v in range(m) if v != u and w[u, v] > 0)
        den = sum(math.exp(_cos(z[u], z[v]) / tau) for v in range(m) if v != u and w[u, v] == 0)
        if num > 0 and den > 0:
            losses.append(-math.log(num / den))
    return sum(losses) / len(losses)


def naive_agc(p: torch.Tensor, p_nb: torch.Tensor, tau: float) -> float:
    """GCC Eq. 9 written out, raw dot products of the columns."""
    k = p.shape[1]
    total = 0.0
    for i in range(k):
        dots = [float(p[:, i].double() @ p_nb[:, j].double()) / tau for j in range(k)]
        total += -(dots[i] - math.log(sum(math.exp(d) for d in dots)))
    return total / k


def naive_soft_pairs(z_i: torch.Tensor, z_j: torch.Tensor, attract: torch.Tensor) -> list[float]:
    out = []
    for a, b, att in zip(z_i, z_j, attract, strict=True):
        d = math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))
        o = math.exp(-d)
        out.append(-math.log(o) if att else -math.log(1 - o))
    return out


def naive_self_training(u: torch.Tensor, gamma: float) -> float:
    n, k = u.shape
    f = [sum(float(u[i, c]) for i in range(n)) for c in range(k)]
    kl = 0.0
    for i in range(n):
        weights = [float(u[i, c]) ** 2 / f[c] for c in range(k)]
        z = sum(weights)
        for c in range(k):
            v = weights[c] / z
            kl += v * math.log(v / float(u[i, c]))
    kl /= n
    u_bar = [f[c] / n for c in range(k)]
    return kl + gamma * sum(x * math.log(x) for x in u_bar)


def _probs(n: int, c: int, seed: int, sharp: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g, dtype=torch.float64) * sharp).softmax(dim=1)


# ----------------------------------------------------------------------------- balance


@pytest.mark.parametrize("n,c,seed", [(5, 2, 0), (16, 3, 1), (32, 10, 2)])
def test_balance_matches_loop(n: int, c: int, seed: int) -> None:
    p = _probs(n, c, seed, sharp=3.0)
    assert float(balance_loss(p)) == pytest.approx(naive_balance(p), abs=1e-6)


def test_balance_hand_cases() -> None:
    collapsed = torch.zeros(6, 4)
    collapsed[:, 0] = 1.0
    assert float(balance_loss(collapsed)) == pytest.approx(math.log(4), abs=1e-6)
    assert float(balance_loss(torch.eye(4).repeat(3, 1))) == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- CC cluster loss


@pytest.mark.parametrize("n,c,tau", [(8, 2, 1.0), (16, 3, 0.5), (32, 10, 1.0), (20, 5, 2.0)])
@pytest.mark.parametrize("entropy", [True, False])
def test_cc_cluster_matches_loop(n: int, c: int, tau: float, entropy: bool) -> None:
    p_a, p_b = _probs(n, c, n + c), _probs(n, c, n + c + 100)
    got = float(cc_cluster_loss(p_a, p_b, temperature=tau, entropy=entropy))
    assert got == pytest.approx(naive_cc_cluster(p_a, p_b, tau, entropy), abs=1e-5)


def test_cc_cluster_hand_case() -> None:
    # Two one-hot samples in two clusters, identical views: each column's positive has cosine 1,
    # its two negatives cosine 0, so every anchor costs log(1 + 2/e); the batch is balanced.
    p = torch.eye(2)
    assert float(cc_cluster_loss(p, p.clone())) == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)


def test_cc_entropy_term_rewards_balance() -> None:
    """Interpolating from a collapse to a balanced batch raises H(p) and lowers CC's term."""
    balanced = torch.eye(5).repeat(4, 1)
    collapsed = torch.zeros(20, 5)
    collapsed[:, 0] = 1.0
    terms = []
    for t in torch.linspace(0, 1, 6):
        p = (1 - t) * collapsed + t * balanced
        terms.append(float(cc_cluster_loss(p, p, entropy=True) - cc_cluster_loss(p, p, entropy=False)))
    assert all(a > b for a, b in zip(terms, terms[1:], strict=False))
    assert terms[0] == pytest.approx(2 * math.log(5), abs=1e-5) and terms[-1] == pytest.approx(0.0, abs=1e-5)


def test_cc_cluster_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        cc_cluster_loss(torch.rand(4, 3), torch.rand(5, 3))
    with pytest.raises(ValueError):
        cc_cluster_loss(torch.rand(4, 1), torch.rand(4, 1))


# ----------------------------------------------------------------------------- GCC losses


@pytest.mark.parametrize("m,tau,seed", [(6, 0.1, 0), (10, 0.5, 1), (16, 1.0, 2)])
def test_rgc_matches_loop(m: int, tau: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(m, 4, generator=g, dtype=torch.float64)
    linked = torch.rand(m, m, generator=g) < 0.3
    linked = linked | linked.T
    w = linked.double() * torch.rand(m, m, generator=g, dtype=torch.float64)
    w = (w + w.T) / 2
    got = float(graph_contrastive_loss(z, w, tau))
    assert got == pytest.approx(naive_rgc(z, w, tau), abs=1e-4)


def test_rgc_hand_case() -> None:
    # z0 = z1 linked with weight 0.5, z2 orthogonal and unlinked: rows 0 and 1 cost
    # -log(0.5 e / e^0) = log 2 - 1; row 2 has no link and is skipped.
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    w = torch.zeros(3, 3)
    w[0, 1] = w[1, 0] = 0.5
    assert float(graph_contrastive_loss(z, w, 1.0)) == pytest.approx(math.log(2) - 1, abs=1e-6)


def test_rgc_prefers_linked_neighbours_close() -> None:
    w = torch.zeros(4, 4)
    w[0, 1] = w[1, 0] = w[2, 3] = w[3, 2] = 1.0
    good = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    bad = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]])
    assert graph_contrastive_loss(good, w, 0.1) < graph_contrastive_loss(bad, w, 0.1)


@pytest.mark.parametrize("n,k,tau", [(8, 2, 1.0), (16, 4, 0.5), (64, 10, 1.0)])
def test_agc_matches_loop(n: int, k: int, tau: float) -> None:
    p, p_nb = _probs(n, k, 3), _probs(n, k, 4)
    assert float(assignment_contrastive_loss(p, p_nb, tau)) == pytest.approx(naive_agc(p, p_nb, tau), abs=1e-5)


def test_agc_hand_case_and_cosine_option() -> None:
    p = torch.eye(2)
    assert float(assignment_contrastive_loss(p, p)) == pytest.approx(math.log(1 + 1 / math.e), abs=1e-6)
    p3 = torch.eye(2).repeat(3, 1)  # raw dots grow with N, cosine ones do not
    assert float(assignment_contrastive_loss(p3, p3)) < float(assignment_contrastive_loss(p, p))
    assert float(assignment_contrastive_loss(p3, p3, cosine=True)) == pytest.approx(math.log(1 + 1 / math.e), abs=1e-6)


# ----------------------------------------------------------------------------- LNSCC losses


@pytest.mark.parametrize("p,d,seed", [(5, 2, 0), (20, 8, 1), (40, 64, 2)])
def test_soft_contrastive_matches_loop(p: int, d: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z_i, z_j = torch.randn(p, d, generator=g, dtype=torch.float64), torch.randn(p, d, generator=g, dtype=torch.float64)
    attract = torch.rand(p, generator=g) < 0.5
    costs = soft_contrastive_loss(z_i, z_j, attract, reduction="none")
    expected = naive_soft_pairs(z_i, z_j, attract)
    assert costs.tolist() == pytest.approx(expected, abs=1e-5)
    assert float(soft_contrastive_loss(z_i, z_j, attract)) == pytest.approx(sum(expected) / p, abs=1e-5)


def test_soft_contrastive_hand_case_and_zero_distance() -> None:
    z_i, z_j = torch.zeros(2, 2), torch.tensor([[3.0, 4.0], [3.0, 4.0]])
    costs = soft_contrastive_loss(z_i, z_j, torch.tensor([True, False]), reduction="none")
    assert costs.tolist() == pytest.approx([5.0, -math.log(1 - math.exp(-5))], abs=1e-5)
    same = soft_contrastive_loss(z_i, z_i.clone().requires_grad_(), torch.tensor([False, False]))
    assert torch.isfinite(same)  # a repelled pair at distance 0 is large but finite


def test_bounded_repulsion_hand_cases_and_gradient_bound() -> None:
    z_i, z_j = torch.zeros(3, 2), torch.tensor([[3.0, 4.0], [3.0, 4.0], [0.0, 0.0]])
    attract = torch.tensor([True, False, False])
    costs = soft_contrastive_loss(z_i, z_j, attract, reduction="none", repulsion="bounded")
    # attraction is the paper's d; repulsion -log(1 - e^-d / 2): at d = 5 and at d = 0 (log 2)
    assert costs.tolist() == pytest.approx([5.0, -math.log(1 - math.exp(-5) / 2), math.log(2)], abs=1e-5)
    near = torch.tensor([[1e-3, 0.0]], requires_grad=True)
    for repulsion, bound in (("bounded", 1.0 + 1e-3), ("log", None)):
        near.grad = None
        soft_contrastive_loss(near, torch.zeros(1, 2), torch.tensor([False]), repulsion=repulsion).backward()
        push = float(near.grad.norm())
        if bound is not None:
            assert push <= bound  # at most 1 however close
        else:
            assert push > 100  # the paper's term: about 1/d
    with pytest.raises(ValueError, match="valid: log, bounded"):
        soft_contrastive_loss(z_i, z_j, attract, repulsion="soft")


@pytest.mark.parametrize("p,d,seed", [(5, 2, 0), (20, 8, 1)])
def test_bounded_repulsion_matches_loop(p: int, d: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z_i, z_j = torch.randn(p, d, generator=g, dtype=torch.float64), torch.randn(p, d, generator=g, dtype=torch.float64)
    attract = torch.rand(p, generator=g) < 0.5
    costs = soft_contrastive_loss(z_i, z_j, attract, reduction="none", repulsion="bounded")
    expected = []
    for a, b, att in zip(z_i.tolist(), z_j.tolist(), attract.tolist(), strict=True):
        dist = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
        expected.append(dist if att else -math.log(1 - 0.5 * math.exp(-dist)))
    assert costs.tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("n,k,gamma", [(6, 2, 1.0), (20, 5, 0.5), (50, 10, 2.0)])
def test_self_training_matches_loop(n: int, k: int, gamma: float) -> None:
    u = _probs(n, k, 7, sharp=2.0)
    assert float(self_training_loss(u, gamma)) == pytest.approx(naive_self_training(u, gamma), abs=1e-6)


def test_self_training_hand_cases() -> None:
    uniform = torch.full((8, 4), 0.25)
    # V = U (nothing to sharpen), prior = sum (1/4) log(1/4) = -log 4.
    assert float(self_training_loss(uniform, gamma=1.0)) == pytest.approx(-math.log(4), abs=1e-6)
    u = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    v = target_distribution(u)
    f = u.sum(dim=0)
    expected = (u**2 / f) / (u**2 / f).sum(dim=1, keepdim=True)
    torch.testing.assert_close(v, expected)
    assert v[0, 0] > u[0, 0] and v[1, 1] > u[1, 1]  # the target is sharper


def test_self_training_gradient_flows_only_through_u() -> None:
    logits = torch.randn(10, 3, requires_grad=True)
    self_training_loss(logits.softmax(dim=1)).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
