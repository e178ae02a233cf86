"""Augmented views of a batch, drawn from the run's own generator (saved in checkpoints)."""

from __future__ import annotations

import torch
from torch import Tensor

from clustering.augment import preset, weak_augment
from clustering.augment.strong import rand_augment
from clustering.config import TrainConfig
from clustering.data import DataSet
from clustering.errors import UserError


class ViewMaker:
    """Weak (SimCLR-style) and strong (weak, then RandAugment) views with one generator.

    Each DDP process augments its own slice of the batch, so each has its own stream: rank 0 keeps
    the single-process seed, so a one-process run and rank 0 of a DDP run draw the same views.
    """

    def __init__(self, config: TrainConfig, data: DataSet, device: torch.device, rank: int = 0) -> None:
        self.kind = data.kind
        self.weak_cfg = preset(config.augment, config.image_size) if data.kind == "image" else None
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed + 1 + 1_000_003 * rank)

    def weak(self, inputs: Tensor) -> Tensor:
        """(B, C, H, W) uint8 or float -> (B, C, H, W) float in [0, 1]."""
        if self.kind != "image":
            raise UserError("this method needs image augmentations; vector data has none (use an MLP method)")
        return weak_augment(inputs, self.weak_cfg, self.generator)

    def strong(self, inputs: Tensor, n: int = 5, m: int = 10) -> Tensor:
        """A weak view followed by RandAugment with ``n`` ops of magnitude up to ``m`` (SACC's view)."""
        return rand_augment(self.weak(inputs), n=n, m=m, generator=self.generator)
