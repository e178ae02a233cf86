"""What each training setting may hold: one table, checked in one place (``TrainConfig.check``).

Every field of :class:`~clustering.config.TrainConfig` that has a choice list or a range has a
rule here, so the CLI, a ``--config`` file, the studio's launch form and the Python API all refuse
the same values with the same one-line message naming the setting and what it accepts. The CLI
parser itself only converts types; ``tests/test_cli.py`` checks that every ``train`` flag with a
numeric type or a fixed set of values is covered by a rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clustering.errors import ConfigError
from clustering.schedules import SCHEDULES
from clustering.umap_gmm import IF_UNEVEN


@dataclass(frozen=True)
class Choices:
    """One of a list of names; ``values`` may be a callable for registries filled at import."""

    values: Sequence[str | bool] | Callable[[], Sequence[str]]
    label: str = ""  # how the message names a value ("augmentation preset"); default: the field

    def valid(self) -> list[str | bool]:
        return list(self.values() if callable(self.values) else self.values)

    def check(self, name: str, value: Any) -> None:
        valid = self.valid()
        if not any(value is v if isinstance(v, bool) else value == v for v in valid):  # 1 is not True here
            raise ConfigError(f"unknown {self.label or name} {value!r}; valid: {', '.join(map(str, valid))}")

    def invalid_example(self) -> str:
        return "no-such-" + (self.label or "value").replace(" ", "-")


@dataclass(frozen=True)
class Range:
    """A number between ``low`` and ``high`` (either may be None); ``integer`` asks for an int."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False
    why: str = ""

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        return kind

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def check(self, name: str, value: Any) -> None:
        if not self.accepts(value):
            why = f" ({self.why})" if self.why else ""
            raise ConfigError(f"{name} must be {self.describe()}{why}, got {value!r}")

    def invalid_examples(self) -> list[float]:
        """Values just outside the range, on each bounded side."""
        step = 1 if self.integer else 0.5
        out: list[float] = []
        if self.low is not None:
            out.append(self.low if self.low_open else self.low - step)
        if self.high is not None:
            out.append(self.high if self.high_open else self.high + step)
        return out


def _methods() -> list[str]:
    from clustering.methods import method_names

    return method_names()


def _backbones() -> list[str]:
    from clustering.models import backbone_names

    return backbone_names()


def _augment_presets() -> list[str]:
    from clustering.augment import PRESETS

    return sorted(PRESETS)


POSITIVE_INT = Range(1, integer=True)
POSITIVE = Range(0, low_open=True)

#: TrainConfig field -> what it may hold (None always means "the default", and is not checked).
#: ``dataset`` has no rule: a DataSet given in code may carry any name, and a name the loader
#: does not know fails there, with the valid names (``clustering.data.load_dataset``).
FIELD_RULES: dict[str, Choices | Range] = {
    "method": Choices(_methods, "method"),
    "split": Choices(("train", "test", "both"), "split"),
    "augment": Choices(_augment_presets, "augmentation preset"),
    "backbone": Choices(_backbones, "backbone"),
    "device": Choices(("auto", "cpu", "cuda"), "device"),
    "optimizer": Choices(("adam", "sgd"), "optimizer"),
    "scheduler": Choices(SCHEDULES, "scheduler"),
    "amp": Choices(("auto", "on", "off"), "amp mode"),
    "best_metric": Choices(("loss", "acc", "nmi", "ari"), "best metric"),
    "projections": Choices(("umap+tsne", "umap", "tsne", "none"), "projections"),
    # Below 3 px the small CNN's two max-pools leave nothing (a traceback before this rule); 8 px,
    # the smallest native size of the embedded data, is the least the backbones are meant for.
    "image_size": Range(8, integer=True, why="the smallest size the backbones are built for"),
    "num_clusters": Range(2, integer=True),
    "instance_dim": POSITIVE_INT,
    "epochs": POSITIVE_INT,
    "minutes": POSITIVE,
    "max_steps": POSITIVE_INT,
    "batch_size": Range(2, integer=True, why="contrastive losses need pairs"),
    "lr": POSITIVE,
    "weight_decay": Range(0),
    "momentum": Range(0, 1, high_open=True),
    "seed": Range(0, integer=True),
    "threads": POSITIVE_INT,
    "eval_every": POSITIVE_INT,
    "eval_batch_size": POSITIVE_INT,
    "checkpoint_minutes": POSITIVE,
    "self_label": Range(0, 1, high_open=True, why="the fraction of the run after which the stage starts"),
    "self_label_threshold": Range(0, 1, high_open=True),
    "self_label_weight": POSITIVE,
    "kmeans_restarts": Range(0, integer=True, why="0 switches the end-of-run k-means restarts off"),
    "umap_gmm": Choices((True, False, IF_UNEVEN), "umap_gmm setting"),
    "world_size": POSITIVE_INT,
}


def check_fields(config: object) -> None:
    """Raise :class:`ConfigError` for the first field of ``config`` that breaks its rule."""
    for name, rule in FIELD_RULES.items():
        value = getattr(config, name)
        if value is not None:
            rule.check(name, value)
