"""UCCC's ``cc_if_balanced``: one look at the head's cluster sizes, and CC's cluster loss from then
on only where they are about equal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clustering.config import TrainConfig
from clustering.data import DataSet, load_dataset
from clustering.evaluation import embed
from clustering.methods import Batch, EpochContext
from clustering.methods.balance_switch import (
    BALANCED_CHECKS_IN_A_ROW,
    BALANCED_LARGEST_OVER_MEAN,
    BalanceSwitch,
    largest_over_mean,
)
from clustering.setup import build_method, resolve_config
from clustering.views import ViewMaker

DEVICE = torch.device("cpu")


def one_hot(sizes: list[int]) -> np.ndarray:
    """Probabilities whose argmax puts ``sizes[c]`` rows in cluster c."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.eye(len(sizes), dtype=np.float32)[labels] * 0.9 + 0.1 / len(sizes)


def test_largest_over_mean_by_hand() -> None:
    assert largest_over_mean(one_hot([3, 1, 0, 0])) == pytest.approx(3.0)  # 3 of 4 rows, mean 1
    assert largest_over_mean(one_hot([5, 5])) == pytest.approx(1.0)
    assert largest_over_mean(one_hot([13, 10, 7, 10])) == pytest.approx(1.3)  # 13 over a mean of 10


def test_the_switch_turns_on_after_two_balanced_checks_in_its_window_and_stays_on() -> None:
    even, uneven = one_hot([13, 10, 7, 10]), one_hot([16, 10, 4, 10])  # exactly the limit; 1.6
    assert (BALANCED_LARGEST_OVER_MEAN, BALANCED_CHECKS_IN_A_ROW) == (1.3, 2)
    switch = BalanceSwitch(start=0.25, until=0.75)
    switch.maybe_check(0.2, even)  # before the window: no look
    assert not switch.checked and switch.parts() == {}
    switch.maybe_check(0.3, even)
    switch.maybe_check(0.35, uneven)  # a failed check restarts the count
    switch.maybe_check(0.4, even)
    assert switch.checked and not switch.balanced and float(switch.parts()["cc_on"]) == 0.0
    resumed = BalanceSwitch(start=0.25, until=0.75)  # a checkpoint keeps the count
    resumed.load_state_dict(switch.state_dict())
    for s in (switch, resumed):
        s.maybe_check(0.45, even)
        assert s.balanced and float(s.parts()["cc_on"]) == 1.0 and float(s.ratio) == pytest.approx(1.3)
    switch.maybe_check(0.5, one_hot([40, 0, 0, 0]))  # on: the balance term's own effect is not looked at
    assert switch.balanced and float(switch.ratio) == pytest.approx(1.3)
    late = BalanceSwitch(start=0.25, until=0.75)
    late.maybe_check(0.6, uneven)
    late.maybe_check(0.7, even)
    late.maybe_check(0.8, even)  # after the window: no look
    assert not late.balanced and float(late.parts()["largest_over_mean"]) == pytest.approx(1.3)


@pytest.fixture(scope="module")
def digits() -> DataSet:
    full = load_dataset("digits", image_size=16)
    return DataSet(inputs=full.inputs[:64].clone(), labels=full.labels[:64], class_names=full.class_names,
                   name="digits", num_classes=10)  # fmt: skip


def step_at(method, views, data: DataSet, progress: float, probs: np.ndarray):  # noqa: ANN001, ANN201
    """The epoch hook at ``progress`` with the head's partition ``probs``, then one step (seeded)."""
    real = embed(method.model, data.inputs, DEVICE)
    method.on_epoch_start(EpochContext(epoch=0, device=DEVICE, num_samples=len(data), progress=progress,
                                       embed=lambda: real | {"probs": probs}))  # fmt: skip
    idx = torch.arange(16)
    torch.manual_seed(1)
    return method.training_step(Batch(inputs=data.inputs[idx], indices=idx, views=views, dataset_inputs=data.inputs,
                                      progress=progress))  # fmt: skip


@pytest.mark.parametrize("balanced", [True, False])
def test_uccc_adds_cc_loss_only_on_balanced_clusters(digits: DataSet, balanced: bool) -> None:
    torch.manual_seed(0)
    config = resolve_config(TrainConfig(method="uccc", dataset="digits", batch_size=16,
                                        method_params={"cc_if_balanced": True}), digits)  # fmt: skip
    method = build_method(config, digits, DEVICE)
    views = ViewMaker(config, digits, DEVICE)
    sizes = [7] * 4 + [6] * 6 if balanced else [28] + [4] * 9  # 64 images
    early = step_at(method, views, digits, 0.2, one_hot(sizes))  # before cc_from (0.25)
    assert "loss_cc" not in early.parts and "cc_on" not in early.parts
    first = step_at(method, views, digits, 0.3, one_hot(sizes))  # one check passed of two
    assert "loss_cc" not in first.parts and float(first.parts["cc_on"]) == 0.0
    late = step_at(method, views, digits, 0.4, one_hot(sizes))
    assert float(late.parts["cc_on"]) == float(balanced)
    assert float(late.parts["largest_over_mean"]) == pytest.approx(sizes[0] * 10 / 64)
    if balanced:  # weight 1, on the three view pairs, beside Eq. 6
        parts = late.parts
        assert torch.allclose(late.loss, parts["loss_ins"] + parts["loss_clu"] + parts["loss_cc"])
        parts["loss_cc"].backward()  # it trains the cluster head
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.model.cluster_head.parameters())
    else:
        assert "loss_cc" not in late.parts
        assert torch.allclose(late.loss, late.parts["loss_ins"] + late.parts["loss_clu"])


def test_a_run_logs_the_decision_and_its_checkpoint_keeps_it(tmp_path) -> None:  # noqa: ANN001
    from clustering.checkpoint import load_checkpoint
    from clustering.runs import read_metrics
    from clustering.train import train

    data = load_dataset("digits", image_size=12)  # 180 images a cluster: the check is on by the rule
    config = TrainConfig(method="uccc", dataset="digits", image_size=12, batch_size=256, out=str(tmp_path), seed=3,
                         threads=2, projections="none", split_merge=False, max_steps=21, run_id="r",
                         method_params={"cc_from": 0.2, "cc_until": 0.9})  # fmt: skip
    result = train(config, progress=False, data=data)
    rows = read_metrics(result.run_dir)
    assert "cc_on" not in rows[0]  # epoch 1 (progress 0 at its start)
    checked = [r for r in rows if "cc_on" in r]
    assert checked and rows[-1]["largest_over_mean"] >= 1.0
    ckpt = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["model"]
    assert bool(ckpt["balance_switch.on"]) is bool(rows[-1]["cc_on"])
    # the row averages its steps' parts, over the epochs since the last row (two checks here)
    assert 1.0 <= float(ckpt["balance_switch.ratio"]) <= 10.0 and 1.0 <= rows[-1]["largest_over_mean"] <= 10.0
