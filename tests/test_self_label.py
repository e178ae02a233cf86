"""The self-labelling stage (clustering.self_label): when it starts, what it trains, bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clustering.config import TrainConfig
from clustering.data import load_dataset
from clustering.errors import ConfigError
from clustering.methods import method_names
from clustering.setup import prepare_data, resolve_config
from clustering.train import train
from clustering.trainer import Trainer

DIGITS = load_dataset("digits", image_size=12)


def config(tmp_path: Path, **kw) -> TrainConfig:  # noqa: ANN003
    base = dict(method="uccc", dataset="digits", image_size=12, batch_size=64, out=str(tmp_path), seed=1, threads=2,
                projections="none")
    return TrainConfig(**(base | kw))


def test_stage_starts_at_its_fraction_of_the_run(tmp_path: Path) -> None:
    seen: dict[int, dict[str, float]] = {}
    # 8 steps; the stage starts at half the run: steps 1-4 without it, 5-8 with it.
    train(config(tmp_path, max_steps=8, self_label=0.5, self_label_threshold=0.0), progress=False, data=DIGITS,
          on_step=lambda s, parts: seen.__setitem__(s, parts))  # fmt: skip
    assert [("loss_sl" in seen[s]) for s in range(1, 9)] == [False] * 4 + [True] * 4
    for s in range(5, 9):  # threshold 0: every image is a pseudo-label, and the loss is part of the total
        assert seen[s]["self_label_share"] == 1.0
        method_loss = seen[s]["loss_ins"] + seen[s]["loss_clu"]
        assert seen[s]["loss"] == pytest.approx(method_loss + seen[s]["loss_sl"], rel=1e-4)


def test_no_stage_without_the_option(tmp_path: Path) -> None:
    seen: list[dict[str, float]] = []
    train(config(tmp_path, max_steps=3), progress=False, data=DIGITS, on_step=lambda s, parts: seen.append(parts))
    assert all("loss_sl" not in parts for parts in seen)


@pytest.mark.parametrize("method", [m for m in method_names() if m != "lnscc"])
def test_every_image_method_trains_with_the_stage(tmp_path: Path, method: str) -> None:
    cfg = resolve_config(config(tmp_path, method=method, self_label=0.0, self_label_threshold=0.0), DIGITS, "cpu")
    trainer = Trainer(cfg, prepare_data(cfg, DIGITS), torch.device("cpu"))
    head = trainer.model.cluster_head[-1].weight
    before = head.detach().clone()
    # mid-run: the stage is on from 0, and at the run's end UCCC's cosine-tail rate is 0 (no update)
    parts = trainer.step(torch.arange(64), progress=0.5)
    assert parts["loss_sl"] > 0 and torch.isfinite(torch.tensor(parts["loss"]))
    assert not torch.equal(before, head.detach())


@pytest.mark.parametrize("field,value,message", [("self_label", 1.0, "fraction"), ("self_label", -0.1, "fraction"),
                                                 ("self_label_threshold", 1.0, "threshold"),
                                                 ("self_label_weight", 0.0, "weight")])  # fmt: skip
def test_bad_settings_are_refused(tmp_path: Path, field: str, value: float, message: str) -> None:
    kw = {"self_label": 0.5, field: value}
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **kw).check()


def test_vectors_are_refused(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "features.npy"
    np.save(path, np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32))
    vectors = load_dataset("vectors", root=str(path), num_clusters=3)
    with pytest.raises(ConfigError, match="needs images"):
        resolve_config(TrainConfig(method="lnscc", dataset="vectors", root=str(path), num_clusters=3, self_label=0.5),
                       vectors, "cpu")  # fmt: skip
