"""The in-memory data set every method trains on, and the data-source registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from clustering.errors import UserError


class DataError(UserError):
    """A user-facing problem with a data set (unknown name, missing path, bad file)."""


@dataclass
class DataSet:
    """A whole data set held in memory.

    Attributes:
        inputs: images as uint8 (N, C, H, W), or vectors as float32 (N, D).
        labels: (N,) int64 class labels, or None when the data set has none.
        class_names: names of the label values (index = label), empty without labels.
        name: the data source's registered name.
        kind: "image" or "vector".
        num_classes: number of clusters to look for by default.
        extra_inputs: images used only by the instance loss (STL-10's unlabeled split).
    """

    inputs: Tensor
    labels: np.ndarray | None
    class_names: list[str]
    name: str
    kind: str = "image"
    num_classes: int = 10
    extra_inputs: Tensor | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("image", "vector"):
            raise DataError(f"kind must be 'image' or 'vector', got {self.kind!r}")
        if self.kind == "image" and (self.inputs.dim() != 4 or self.inputs.dtype != torch.uint8):
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.inputs.dtype} {tuple(self.inputs.shape)}")
        if self.kind == "vector" and self.inputs.dim() != 2:
            raise DataError(f"vectors must be (N, D), got {tuple(self.inputs.shape)}")
        if self.labels is not None and len(self.labels) != len(self.inputs):
            raise DataError(f"{len(self.labels)} labels for {len(self.inputs)} samples")
        if len(self.inputs) < 2:
            raise DataError(f"data set {self.name!r} has {len(self.inputs)} samples; at least 2 are needed")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return tuple(self.inputs.shape[1:]) if self.kind == "image" else None  # type: ignore[return-value]

    def resized(self, size: int) -> DataSet:
        """A copy with images resized (antialiased bilinear) to size x size, done once at load."""
        if self.kind != "image" or self.inputs.shape[-1] == size and self.inputs.shape[-2] == size:
            return self
        return DataSet(
            inputs=resize_uint8(self.inputs, size),
            labels=self.labels,
            class_names=self.class_names,
            name=self.name,
            kind=self.kind,
            num_classes=self.num_classes,
            extra_inputs=None if self.extra_inputs is None else resize_uint8(self.extra_inputs, size),
            meta=dict(self.meta),
        )


def resize_uint8(images: Tensor, size: int, chunk: int = 4096) -> Tensor:
    out = []
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


@dataclass(frozen=True)
class DataSourceSpec:
    """A registered data source: how to load it and the defaults that respect the data."""

    name: str
    loader: Callable[..., DataSet]
    description: str
    needs_root: bool
    num_classes: int | None = None


_REGISTRY: dict[str, DataSourceSpec] = {}


def register_source(spec: DataSourceSpec) -> DataSourceSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"data source {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def source_names() -> list[str]:
    return sorted(_REGISTRY)


def get_source(name: str) -> DataSourceSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(source_names())}") from None


def require_root(root: str | Path | None, dataset: str) -> Path:
    if root is None or str(root) == "":
        raise DataError(f"dataset {dataset!r} needs --root PATH (the folder holding its files)")
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"data root {str(path)!r} for dataset {dataset!r} does not exist")
    return path
