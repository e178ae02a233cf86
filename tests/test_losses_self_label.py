"""The self-labelling loss against a naive loop and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from clustering.losses.self_label import self_label_loss


def naive_self_label(weak: torch.Tensor, logits: torch.Tensor, threshold: float) -> float:
    """SCAN's class-balanced cross-entropy written per sample."""
    picked = [(i, int(weak[i].argmax())) for i in range(len(weak)) if float(weak[i].max()) > threshold]
    if not picked:
        return 0.0
    counts: dict[int, int] = {}
    for _, c in picked:
        counts[c] = counts.get(c, 0) + 1
    num = den = 0.0
    for i, c in picked:
        w = len(picked) / (len(counts) * counts[c])
        row = [float(v) for v in logits[i].double()]
        ce = -(row[c] - math.log(sum(math.exp(v) for v in row)))
        num += w * ce
        den += w
    return num / den


@pytest.mark.parametrize("n,c,threshold,seed", [(8, 3, 0.5, 0), (32, 10, 0.3, 1), (64, 4, 0.6, 2), (5, 2, 0.0, 3)])
def test_matches_naive_loop(n: int, c: int, threshold: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    weak = (3 * torch.randn(n, c, generator=g)).softmax(dim=1)
    logits = torch.randn(n, c, generator=g)
    loss, confident = self_label_loss(weak, logits, threshold)
    assert int(confident) == int((weak.max(dim=1).values > threshold).sum())
    assert loss.item() == pytest.approx(naive_self_label(weak, logits, threshold), rel=1e-5)


def test_hand_computed_balancing() -> None:
    # Three confident samples: two of class 0, one of class 1; the strong logits put log 3 on the
    # target for the class-0 ones and 0 (uniform over 2 classes) for the class-1 one.
    weak = torch.tensor([[0.99, 0.01], [0.98, 0.02], [0.03, 0.97], [0.6, 0.4]])
    logits = torch.tensor([[math.log(3.0), 0.0], [math.log(3.0), 0.0], [0.0, 0.0], [5.0, -5.0]])
    loss, confident = self_label_loss(weak, logits, 0.9)
    # CE: class-0 samples -log(3/4) each, class-1 sample log 2; weights 3/4, 3/4 and 3/2:
    # (2 * 3/4 * log(4/3) + 3/2 * log 2) / 3 = (log(4/3) + log 2) / 2.
    assert int(confident) == 3
    assert loss.item() == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, rel=1e-6)


def test_no_confident_sample_gives_zero_with_a_gradient_path() -> None:
    weak = torch.full((4, 5), 0.2)
    logits = torch.randn(4, 5, requires_grad=True)
    loss, confident = self_label_loss(weak, logits, 0.5)
    assert int(confident) == 0 and loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_gradient_flows_to_the_strong_logits_only_through_confident_rows() -> None:
    weak = torch.tensor([[0.95, 0.05], [0.5, 0.5]], requires_grad=True)
    logits = torch.zeros(2, 2, requires_grad=True)
    loss, _ = self_label_loss(weak, logits, 0.9)
    loss.backward()
    assert weak.grad is None  # the pseudo-labels carry no gradient
    assert logits.grad[0].abs().sum() > 0 and logits.grad[1].abs().sum() == 0


@pytest.mark.parametrize("threshold", [-0.1, 1.0])
def test_bad_threshold_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        self_label_loss(torch.full((2, 2), 0.5), torch.zeros(2, 2), threshold)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        self_label_loss(torch.full((2, 3), 1 / 3), torch.zeros(2, 2), 0.5)
