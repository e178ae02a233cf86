"""A self-labelling stage for any image method (SCAN / SACC style), a trainer option.

From ``start`` (a fraction of the run: its time budget, epochs or steps, whichever is furthest
along) every step adds ``weight`` x :func:`clustering.losses.self_label.self_label_loss`: the
confident weak views' clusters become pseudo-labels for strong (RandAugment) views of the same
images. The method's own loss stays, so the representation keeps being trained; the stage
sharpens the cluster head where it is already sure and carries those decisions to harder views.
It costs one extra weak forward (no gradient) and one strong forward and backward per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from clustering.losses.self_label import self_label_loss
from clustering.methods.registry import Batch, ClusterMethod, StepOutput


@dataclass(frozen=True)
class SelfLabelSettings:
    start: float  # fraction of the run after which the stage is on, in [0, 1)
    threshold: float  # confidence of a weak view above which its argmax is a pseudo-label
    weight: float  # of the self-labelling loss beside the method's own

    def validate(self) -> None:
        """The same rules as the config's fields (:mod:`clustering.rules`); raises ConfigError."""
        from clustering.rules import FIELD_RULES

        for name, value in (("self_label", self.start), ("self_label_threshold", self.threshold),
                            ("self_label_weight", self.weight)):  # fmt: skip
            FIELD_RULES[name].check(name, value)


class SelfLabelStep(nn.Module):
    """``method.training_step`` plus the self-labelling loss once ``batch.progress >= start``.

    A module (holding the method, so its parameters are the method's) because under DDP the whole
    step, both forwards included, must run inside one DistributedDataParallel forward.
    """

    def __init__(self, method: ClusterMethod, settings: SelfLabelSettings) -> None:
        super().__init__()
        settings.validate()
        self.method = method
        self.settings = settings
        self.ddp_find_unused_parameters = method.ddp_find_unused_parameters

    def training_step(self, batch: Batch) -> StepOutput:
        out = self.method.training_step(batch)
        if batch.progress < self.settings.start:
            return out
        model, x = self.method.model, batch.inputs
        with torch.no_grad():
            weak_probs = model(batch.views.weak(x)).probs
        strong_logits = model(batch.views.strong(x)).logits
        loss_sl, confident = self_label_loss(weak_probs, strong_logits, self.settings.threshold)
        parts = {**out.parts, "loss_sl": loss_sl, "self_label_share": confident.float() / max(len(x), 1)}
        return StepOutput(loss=out.loss + self.settings.weight * loss_sl, parts=parts)
