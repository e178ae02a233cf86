"""Learning-rate schedules over the run's progress (epochs, steps or minutes)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from clustering.config import TrainConfig
from clustering.data import load_dataset
from clustering.runs import read_metrics
from clustering.schedules import ProgressSchedule, lr_factor
from clustering.train import train


def test_cosine_factor_by_hand() -> None:
    assert lr_factor("cosine", 0.0) == 1.0
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 0.25) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0)
    assert lr_factor("cosine", 1.7) == pytest.approx(0.0)  # clamped
    assert lr_factor("none", 0.9) == 1.0


def test_cosine_tail_factor_by_hand() -> None:
    # The base rate for the first 80% of the run, then a half cosine to 0 over the last 20%.
    assert lr_factor("cosine-tail", 0.0) == 1.0
    assert lr_factor("cosine-tail", 0.5) == 1.0
    assert lr_factor("cosine-tail", 0.8) == pytest.approx(1.0)
    assert lr_factor("cosine-tail", 0.85) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    assert lr_factor("cosine-tail", 0.9) == pytest.approx(0.5)
    assert lr_factor("cosine-tail", 1.0) == pytest.approx(0.0)
    assert lr_factor("cosine-tail", 1.3) == pytest.approx(0.0)  # clamped


def test_unknown_schedule_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: none, cosine, cosine-tail"):
        lr_factor("linear", 0.3)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    with pytest.raises(ValueError, match="'step'"):
        ProgressSchedule(optimizer, "step", 1e-3)


def test_schedule_sets_every_parameter_group() -> None:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    optimizer = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.4)
    schedule = ProgressSchedule(optimizer, "cosine", 0.4)
    assert schedule.apply(0.5) == pytest.approx(0.2)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.2, 0.2])


@pytest.mark.parametrize(("method", "scheduler", "expected"), [("cc", "cosine", "cosine"),
                                                               ("uccc", None, "cosine-tail")])  # UCCC's default
def test_the_rate_decays_over_a_step_budget(tmp_path: Path, method: str, scheduler: str | None,
                                            expected: str) -> None:
    # Under --max-steps (or --minutes) the epoch budget is a placeholder of 10**6 epochs; an
    # epoch-indexed cosine stayed at the base rate there. The rate must follow the step budget.
    data = load_dataset("digits", image_size=12)
    config = TrainConfig(method=method, dataset="digits", image_size=12, batch_size=256, out=str(tmp_path), seed=0,
                         threads=2, projections="none", max_steps=14, scheduler=scheduler, lr=1e-3, run_id="r")
    train(config, progress=False, data=data)
    rows = read_metrics(tmp_path / "r")
    # 7 steps an epoch; a row logs the rate of the epoch's last step, taken at progress (step - 1) / 14.
    assert [r["step"] for r in rows] == [7, 14]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 * lr_factor(expected, 6 / 14),
                                                     1e-3 * lr_factor(expected, 13 / 14)])
    assert rows[-1]["lr"] < 1e-3 * 0.3  # 13 / 14 is deep in either decay
