"""The public setup layer: resolve a config once, then build the method, optimiser and scheduler.

``train``, the benchmarks and the tests build runs with these functions only, so a run set up by
hand is the run the trainer would have made.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clustering import distributed
from clustering.config import TrainConfig, versions
from clustering.data import DataSet
from clustering.data_defaults import (
    Choice,
    DataProfile,
    choose_augment,
    choose_backbone,
    choose_batch_size,
    choose_image_size,
    choose_kmeans_restarts,
    choose_refit_head,
    choose_split_merge,
    choose_umap_gmm,
    describe,
    replaced_by_umap_gmm,
)
from clustering.errors import ConfigError
from clustering.methods import get_method, method_names, resolve_params
from clustering.models import ClusterModel, build_backbone
from clustering.runs import read_config
from clustering.schedules import ProgressSchedule
from clustering.umap_gmm import too_small as umap_gmm_too_small


def pick_device(requested: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; ``cuda`` without CUDA is a clear error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but CUDA is not available; use --device auto or cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_config(config: TrainConfig, data: DataSet, device_type: str | None = None) -> TrainConfig:
    """A copy of ``config`` with every ``None`` filled, checked once.

    ``data`` is the data set as loaded (images at their native size): image size, augmentation,
    backbone and batch size come from its shape (:mod:`clustering.data_defaults`) wherever the
    user left them unset; the choices and reasons are kept in ``data_defaults``. ``device_type``
    defaults to the device the config asks for.
    """
    config.check()
    method_cls = get_method(config.method)
    cfg = TrainConfig.from_dict(config.to_dict())
    cfg.num_clusters = cfg.num_clusters or data.num_classes
    if cfg.num_clusters < 2:
        raise ConfigError(f"num_clusters must be >= 2, got {cfg.num_clusters}")
    if cfg.self_label is not None and data.kind != "image":
        raise ConfigError("the self-labelling stage needs images (weak and strong views); "
                          f"data set {cfg.dataset!r} holds vectors")  # fmt: skip
    device_type = device_type or pick_device(cfg.device).type
    profile = DataProfile.of(data, cfg.num_clusters)
    applied: dict[str, Choice] = {}
    if cfg.backbone is None and method_cls.train_defaults.backbone is None:
        applied["backbone"] = choose_backbone(profile, device_type)
    cfg.backbone = cfg.backbone or method_cls.train_defaults.backbone or applied["backbone"].value
    # The method's defaults on this backbone (the papers tune for ResNets; the CPU CNN differs).
    defaults = method_cls.train_defaults.on(cfg.backbone, config.optimizer)
    batch = choose_batch_size(profile, defaults.method_batch(cfg.num_clusters), device_type, cfg.world_size,
                              method_cls.column_contrast)  # fmt: skip
    choices = {"batch_size": batch}
    if data.kind == "image":
        choices |= {"image_size": choose_image_size(profile, device_type, cfg.backbone),
                    "augment": choose_augment(profile)}
    if cfg.split_merge and profile.num_classes < 3:
        raise ConfigError(f"split_merge needs at least 3 clusters (a move splits one and merges two others); "
                          f"this run has {profile.num_classes}: run without --split-merge")  # fmt: skip
    if cfg.umap_gmm and (why_small := umap_gmm_too_small(profile.num_samples, profile.num_classes)):
        raise ConfigError(f"umap_gmm: {why_small}; run without --umap-gmm")
    if method_cls.softmax_head:
        choices["umap_gmm"] = choose_umap_gmm(profile, method_cls.uniform_prior)
        if (choices["umap_gmm"].value if cfg.umap_gmm is None else cfg.umap_gmm) is True:
            choices |= replaced_by_umap_gmm()  # (IF_UNEVEN keeps them for a head that comes out even)
        else:
            choices["refit_head"] = choose_refit_head(profile, method_cls.uniform_prior)
            choices["split_merge"] = choose_split_merge(profile)
            choices["kmeans_restarts"] = choose_kmeans_restarts(profile, method_cls.uniform_prior)
    elif cfg.refit_head or cfg.split_merge or cfg.kmeans_restarts or cfg.umap_gmm:
        with_it = ", ".join(n for n in method_names() if get_method(n).softmax_head)
        asked = next(n for n in ("refit_head", "split_merge", "kmeans_restarts", "umap_gmm") if getattr(cfg, n))
        raise ConfigError(f"{asked} rewrites the two-layer softmax cluster head; {cfg.method!r} has its own "
                          f"head (methods with it: {with_it})")  # fmt: skip
    else:
        cfg.refit_head = cfg.split_merge = cfg.umap_gmm = False
        cfg.kmeans_restarts = 0
    for name, choice in choices.items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, choice.value)
            applied[name] = choice
    own = {f.name: f.default for f in dataclasses.fields(method_cls.Params)} | defaults.params
    for name, rule in method_cls.param_rules.items():  # method parameters chosen from the data
        if cfg.method_params.get(name) is None:
            applied[name] = rule(profile, own.get(name))
            cfg.method_params = {**cfg.method_params, name: applied[name].value}
    cfg.data_defaults = describe(applied)
    cfg.instance_dim = cfg.instance_dim or defaults.instance_dim
    cfg.optimizer = cfg.optimizer or defaults.optimizer
    cfg.lr = cfg.lr or defaults.lr
    cfg.weight_decay = defaults.weight_decay if cfg.weight_decay is None else cfg.weight_decay
    cfg.scheduler = cfg.scheduler or defaults.scheduler
    explicit_batch = config.batch_size is not None and config.batch_size <= len(data)
    cfg.batch_size = max(2, min(cfg.batch_size, len(data)))
    split_batch(cfg, explicit=explicit_batch)
    if cfg.epochs is None:
        cfg.epochs = 1000 if cfg.minutes is None and cfg.max_steps is None else 10**6
    params = resolve_params(method_cls, {**defaults.params, **cfg.method_params})
    cfg.method_params = dataclasses.asdict(params)
    cfg.versions = versions()
    cfg.check()
    return cfg


def split_batch(cfg: TrainConfig, explicit: bool) -> None:
    """Make the global batch split evenly over ``cfg.world_size`` processes (each takes N / P).

    A batch size the user chose must divide exactly; a default (or one clamped to the data set
    size) is rounded down to the nearest multiple.
    """
    world = cfg.world_size
    if cfg.batch_size % world == 0:
        return
    if explicit:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is the global batch and must split evenly over the {world} processes; "
            f"use a multiple of {world} (e.g. {max(world, cfg.batch_size // world * world)})"
        )
    if cfg.batch_size < world:
        raise ConfigError(f"the batch ({cfg.batch_size}) is smaller than the number of processes ({world})")
    cfg.batch_size -= cfg.batch_size % world


def prepare_data(config: TrainConfig, data: DataSet) -> DataSet:
    """The data set at the run's resolution (resized once, in memory)."""
    return data.resized(config.image_size) if data.kind == "image" and config.image_size else data


def build_method(config: TrainConfig, data: DataSet, device: torch.device) -> nn.Module:
    """The registered method around a fresh model, on ``device``; ``data`` at the run's resolution
    (its per-channel statistics become the model's input normalisation)."""
    method_cls = get_method(config.method)
    params = resolve_params(method_cls, config.method_params)
    try:
        backbone = build_backbone(config.backbone, tuple(data.inputs.shape[1:]), config.image_size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if data.kind == "image":
        x = data.inputs.float() / 255.0
        mean = x.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3).view(1, -1, 1, 1)
    else:
        x = data.inputs.float()
        mean, std = x.mean(dim=0, keepdim=True), x.std(dim=0, keepdim=True).clamp_min(1e-6)
    model = ClusterModel(backbone, config.num_clusters, config.instance_dim, mean, std)
    try:
        method = method_cls(model, params, len(data))
    except ValueError as exc:
        raise ConfigError(f"cannot set up method {config.method!r}: {exc}") from None
    return method.to(device)


def build_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> ProgressSchedule:
    """The learning rate over the run's progress (:mod:`clustering.schedules`)."""
    assert config.scheduler is not None and config.lr is not None, "resolve_config fills scheduler and lr"
    return ProgressSchedule(optimizer, config.scheduler, config.lr)


def seed_everything(seed: int) -> None:
    """torch, numpy and Python's random from the run's seed (the weights' initialisation)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def load_run_config(run_dir: Path) -> TrainConfig:
    """A saved run's config, as the run had it: a method parameter added since the run was saved
    takes the value the run was trained with (the method's ``Params.VALUE_BEFORE_ADDED``), not
    today's default, so resuming or re-evaluating an older run rebuilds the same model."""
    data = read_config(run_dir)
    if data is None:
        raise ConfigError(f"{str(run_dir)!r} has no readable config.json; is it a run directory?")
    config = TrainConfig.from_dict(data)
    if config.method_params:  # a resolved config stores every parameter the method had then
        before = getattr(get_method(config.method).Params, "VALUE_BEFORE_ADDED", {})
        config.method_params = {**before, **config.method_params}
    return config


def resumed_config(run_dir: Path, overrides: dict[str, Any], world: int) -> TrainConfig:
    """The saved config of the run in ``run_dir`` with ``overrides`` applied, for ``world`` processes.
    Read by rank 0 and broadcast: other nodes need not see the run directory."""
    config = distributed.on_main(lambda: load_run_config(run_dir))
    for key, value in overrides.items():
        setattr(config, key, value)
    config.world_size = world  # the run continues on this many processes
    config.check()
    split_batch(config, explicit=True)
    return config
