"""A method's training defaults, typed: what the trainer uses where the user sets nothing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainDefaults:
    """Optimiser, batch and model-size defaults of one method, with per-backbone replacements.

    The papers tune their optimiser and temperatures for ResNets on 32-96 px images; on the small
    CPU CNN some of those settings stall or degenerate (README, per method), so ``by_backbone``
    maps a backbone to the fields it replaces, and ``params`` (inside such an entry) to method
    parameter defaults it replaces. Unknown field names fail when the class is defined.
    """

    optimizer: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 0.0
    scheduler: str = "none"
    batch_size: int | None = None  # a fixed batch; or
    batch_size_per_10_clusters: int | None = None  # the papers' N = this * C / 10
    instance_dim: int = 128
    backbone: str | None = None  # the one backbone a method trains with (LNSCC: mlp); None = from the data
    params: dict[str, Any] = field(default_factory=dict)  # method parameter defaults this entry replaces
    by_backbone: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {f.name for f in dataclasses.fields(self)} - {"by_backbone"}
        for backbone, special in self.by_backbone.items():
            unknown = sorted(set(special) - names)
            if unknown:
                raise TypeError(f"by_backbone[{backbone!r}] names unknown training defaults {unknown}; "
                                f"valid: {', '.join(sorted(names))}")  # fmt: skip

    def on(self, backbone: str, optimizer: str | None = None) -> TrainDefaults:
        """These defaults with ``by_backbone[backbone]`` applied. An optimiser the user chose that
        differs from the backbone's keeps the general training defaults (the backbone's learning
        rate was tuned for its own optimiser); its parameter defaults still apply."""
        special = dict(self.by_backbone.get(backbone, {}))
        if optimizer is not None and special.get("optimizer", optimizer) != optimizer:
            special = {"params": special.get("params", {})}
        return dataclasses.replace(self, by_backbone={}, **special)

    def method_batch(self, num_clusters: int) -> int:
        """The method's own batch: a fixed size, or the papers' N = k * C / 10 (k = 256 when unset)."""
        if self.batch_size is not None:
            return int(self.batch_size)
        return int((self.batch_size_per_10_clusters or 256) * num_clusters / 10)

    def general(self) -> dict[str, Any]:
        """The fields that are set, without the per-backbone entries (what ``methods`` lists)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("by_backbone", "params") and getattr(self, f.name) is not None}  # fmt: skip

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Per backbone, the training and parameter defaults it replaces, flat (``methods``, the
        studio's launch form)."""
        return {backbone: {k: v for k, v in special.items() if k != "params"} | special.get("params", {})
                for backbone, special in self.by_backbone.items()}  # fmt: skip
