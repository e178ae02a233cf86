"""The training configuration: one dataclass, resolved once into the run's ``config.json``."""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clustering.errors import ConfigError


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``None`` means "the method's or data's default";
    :func:`clustering.train.resolve_config` fills every ``None`` before the run starts."""

    method: str = "uccc"
    dataset: str = "digits"
    root: str | None = None
    label_column: str | None = None  # vectors: the csv/parquet column (or npz array) holding labels
    split: str = "both"
    image_size: int | None = None
    download: bool = False
    augment: str | None = None
    backbone: str | None = None
    num_clusters: int | None = None
    instance_dim: int | None = None
    epochs: int | None = None
    minutes: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    optimizer: str | None = None
    momentum: float = 0.9
    scheduler: str | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool | None = None  # channels-last memory for conv backbones; None = on for images
    threads: int | None = None
    eval_every: int | None = None  # epochs between evaluations; None = by time (clustering.train.EVAL_TIME_RATIO)
    eval_batch_size: int = 1024
    checkpoint_minutes: float = 5.0
    best_metric: str = "loss"
    # Self-labelling stage (clustering.self_label): from this fraction of the run on; None = off.
    self_label: float | None = None
    self_label_threshold: float = 0.95
    self_label_weight: float = 1.0
    # When the run finishes, refit the cluster head as the spherical k-means of its own partition of
    # the backbone features (clustering.head_refit); None = from the data (images per cluster).
    refit_head: bool | None = None
    # Then merge-and-split moves where they raise the spherical k-means objective in those features
    # (clustering.split_merge): a class split in two clusters rejoined, two classes in one parted.
    # None = from the data (on from 3 clusters).
    split_merge: bool | None = None
    # Between the two: spherical k-means on those features from this many k-means++ starts, whose
    # best replaces the head's partition where its objective is higher (clustering.kmeans_restarts).
    # None = from the method (10 where its head trains under a uniform prior: CC, SACC, GCC); 0 = off.
    kmeans_restarts: int | None = None
    # When the run finishes, the partition of UMAP + GMM on those features replaces the head's
    # (clustering.umap_gmm): in a uniform prior's features a large class is wide and two small ones
    # close, so the k-means objective keeps the evened partition; a neighbour graph does not. None =
    # from the method (on for CC, SACC and GCC, which then skip the refit, restarts and moves; a run
    # resumed from before the field existed keeps its own end); it composes with them if asked.
    # "if_uneven" (UCCC's default): only where the head's clusters come out uneven at the end (the
    # classes differ in size; clustering.methods.balance_switch.uneven), in place of the refit and moves.
    umap_gmm: bool | str | None = None
    # 2-D maps of z the run writes when it ends, so the studio opens them at once
    # (clustering.projections; "none" in tests and benchmarks, which never look at them).
    projections: str = "umap+tsne"
    method_params: dict[str, Any] = field(default_factory=dict)
    out: str = "runs"
    run_id: str | None = None
    # Processes of a torchrun/DDP run; set by the trainer. batch_size is the global batch over all
    # of them, so a run on P processes optimises the objective of one process with that batch.
    world_size: int = 1
    sync_bn: bool = True  # batch-norm statistics over the global batch when world_size > 1
    versions: dict[str, str] = field(default_factory=dict)
    # The defaults chosen from the data's shape (clustering.data_defaults): field -> {value, reason}.
    data_defaults: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"malformed config: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config {str(path)!r}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"config {str(path)!r} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def check(self) -> None:
        """Validate every field against its rule (:mod:`clustering.rules`); raises ConfigError."""

        from clustering.rules import check_fields

        check_fields(self)
        if not isinstance(self.method_params, dict):
            raise ConfigError("method_params must be a JSON object")


def versions() -> dict[str, str]:
    import numpy
    import torch

    from clustering import __version__

    return {
        "cluster_studio": __version__,
        "torch": str(torch.__version__),  # TorchVersion is a str subclass weights_only refuses
        "numpy": str(numpy.__version__),
        "python": platform.python_version(),
    }
