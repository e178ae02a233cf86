"""Learning-rate schedules over a run's progress, not its epoch count.

A run ends on whichever of its budgets runs out first: epochs, optimiser steps or minutes
(``Progress`` in :mod:`clustering.train`). An epoch-indexed cosine (``CosineAnnealingLR`` with
``T_max = epochs``) decays over the epoch budget only; under ``--minutes`` or ``--max-steps`` the
epoch budget is a placeholder of 10**6 and that schedule stays at the base rate for the whole run.
Here the rate is a function of the run's progress in [0, 1] (the furthest along of its budgets),
set before every optimiser step, so a cosine reaches zero when the run ends however it is budgeted.

A resumed run with a time budget has a budget of its own (it counts from the resume), so its
cosine starts again from the base rate; with an epoch or step budget it continues where it was.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: Schedule names (``--scheduler``): the factor on the base learning rate at progress p in [0, 1].
SCHEDULES = ("none", "cosine", "cosine-tail")

#: ``cosine-tail``: the share of the run, at its end, over which the rate decays to zero. A full
#: cosine lost in short runs that are far from converged (UCCC at 100 and 200 classes in 5
#: minutes, README); the tail keeps the base rate for the run's first 80% and settles the model at
#: its end, where a constant rate left the partition moving by +-0.005 ACC from epoch to epoch.
TAIL_SHARE = 0.2


def lr_factor(schedule: str, progress: float) -> float:
    """The multiplier of the base learning rate at ``progress`` (clamped to [0, 1]).

    ``none``: 1. ``cosine``: (1 + cos(pi p)) / 2, from 1 at the start to 0 at the end of the run.
    ``cosine-tail``: 1 until 1 - ``TAIL_SHARE``, then the same half cosine over the rest, to 0 at 1.
    """
    p = min(1.0, max(0.0, progress))
    if schedule == "none":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "cosine-tail":
        return lr_factor("cosine", max(0.0, p - (1.0 - TAIL_SHARE)) / TAIL_SHARE)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


class ProgressSchedule:
    """Sets every parameter group's learning rate to ``base_lr * lr_factor(schedule, progress)``.

    Stateless beyond its settings: the progress comes from the trainer at every step, and the base
    rate from the config, so a checkpoint needs only the schedule's name (older checkpoints hold an
    epoch-indexed torch scheduler's state, which is ignored).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: str, base_lr: float) -> None:
        lr_factor(schedule, 0.0)  # an unknown name fails here, not at the first step
        self.optimizer, self.schedule, self.base_lr = optimizer, schedule, base_lr
        self.apply(0.0)

    def apply(self, progress: float) -> float:
        """Set the rate for the step taken at ``progress``; returns it."""
        lr = self.base_lr * lr_factor(self.schedule, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore: the rate follows the resumed run's config and progress."""
