"""The one trainer: config resolution, device/AMP, the loop, evaluation, checkpoints, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from clustering import distributed
from clustering.augment import preset, to_float, weak_augment
from clustering.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from clustering.config import TrainConfig, versions
from clustering.data import DataSet, get_source, load_dataset
from clustering.errors import ConfigError, UserError
from clustering.methods import Batch, EpochContext, get_method, resolve_params
from clustering.metrics import SCALAR_KEYS, evaluate
from clustering.models import ClusterModel, build_backbone
from clustering.runs import RunWriter, new_run_id, read_config

StepCallback = Callable[[int, dict[str, float]], None]


# ----------------------------------------------------------------------------- configuration


def default_backbone(data: DataSet) -> str:
    if data.kind == "vector":
        return "mlp"
    channels, size = data.inputs.shape[1], data.inputs.shape[-1]
    return "cnn" if channels == 1 and size <= 32 else "resnet18"


def resolve_config(config: TrainConfig, data: DataSet) -> TrainConfig:
    """Fill every ``None`` from the method's ``train_defaults`` and the data set."""
    config.check()
    method_cls = get_method(config.method)
    defaults = method_cls.train_defaults
    cfg = TrainConfig.from_dict(config.to_dict())
    cfg.num_clusters = cfg.num_clusters or data.num_classes
    if cfg.num_clusters < 2:
        raise ConfigError(f"num_clusters must be >= 2, got {cfg.num_clusters}")
    cfg.backbone = cfg.backbone or defaults.get("backbone") or default_backbone(data)
    spec = get_source(cfg.dataset)
    cfg.image_size = int(data.inputs.shape[-1]) if data.kind == "image" else None
    cfg.augment = cfg.augment or spec.augment
    cfg.instance_dim = cfg.instance_dim or defaults.get("instance_dim", 128)
    defaults = backbone_defaults(defaults, cfg.backbone, config.optimizer)
    cfg.optimizer = cfg.optimizer or defaults.get("optimizer", "adam")
    cfg.lr = cfg.lr or defaults.get("lr", 3e-4)
    cfg.weight_decay = defaults.get("weight_decay", 0.0) if cfg.weight_decay is None else cfg.weight_decay
    cfg.scheduler = cfg.scheduler or defaults.get("scheduler", "none")
    if cfg.batch_size is None:
        if "batch_size" in defaults:
            cfg.batch_size = int(defaults["batch_size"])
        else:  # the papers' N = 256 * C / 10
            cfg.batch_size = int(defaults.get("batch_size_per_10_clusters", 256) * cfg.num_clusters / 10)
    cfg.batch_size = max(2, min(cfg.batch_size, len(data)))
    _split_batch(cfg, explicit=config.batch_size is not None and config.batch_size <= len(data))
    if cfg.epochs is None:
        cfg.epochs = 1000 if cfg.minutes is None and cfg.max_steps is None else 10**6
    params = resolve_params(method_cls, {**defaults.get("params", {}), **cfg.method_params})
    cfg.method_params = _dataclass_dict(params)
    cfg.versions = versions()
    cfg.check()
    return cfg


def backbone_defaults(defaults: dict[str, Any], backbone: str, optimizer: str | None = None) -> dict[str, Any]:
    """A method's ``train_defaults`` with its ``by_backbone[backbone]`` entries applied.

    The papers tune their optimiser and temperatures for ResNets on 32-96 px images; on the small
    CPU CNN some of those settings stall or degenerate (README, per method), so a method may name
    other training defaults, and method parameter defaults under ``"params"``, for a backbone. An
    optimiser the user chose that differs from the backbone's keeps the method's general
    training defaults (the backbone's learning rate was tuned for its own optimiser).
    """
    special = dict(defaults.get("by_backbone", {}).get(backbone, {}))
    if optimizer is not None and special.get("optimizer", optimizer) != optimizer:
        special = {"params": special.get("params", {})}
    merged = {k: v for k, v in defaults.items() if k != "by_backbone"}
    return merged | special


def _split_batch(cfg: TrainConfig, explicit: bool) -> None:
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


def _dataclass_dict(obj: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(obj)


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but CUDA is not available; use --device auto or cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


# ----------------------------------------------------------------------------- views


class ViewMaker:
    """Makes augmented views of a batch with the run's own generator (saved in checkpoints)."""

    def __init__(self, config: TrainConfig, data: DataSet, device: torch.device, rank: int = 0) -> None:
        self.kind = data.kind
        self.weak_cfg = preset(config.augment, config.image_size) if data.kind == "image" else None
        self.generator = torch.Generator(device=device)
        # Each DDP process augments its own slice, so each needs its own stream (rank 0 keeps the
        # single-process seed).
        self.generator.manual_seed(config.seed + 1 + 1_000_003 * rank)
        self._strong = None

    def weak(self, inputs: Tensor) -> Tensor:
        if self.kind != "image":
            raise UserError("this method needs image augmentations; vector data has none (use an MLP method)")
        return weak_augment(inputs, self.weak_cfg, self.generator)

    def strong(self, inputs: Tensor) -> Tensor:
        from clustering.augment import strong as strong_module  # provided by the strong-augment module

        if self.kind != "image":
            raise UserError("strong augmentations need image data")
        weak = self.weak(inputs)
        return strong_module.rand_augment(weak, generator=self.generator)

    def plain(self, inputs: Tensor) -> Tensor:
        return to_float(inputs) if self.kind == "image" else inputs.float()


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def embed(model: ClusterModel, inputs: Tensor, device: torch.device, batch_size: int = 1024,
          amp: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    """Run the model over all ``inputs`` without augmentation: probs, z (normalised), h."""
    was_training = model.training
    model.eval()
    probs, zs, hs = [], [], []
    try:
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size].to(device, non_blocking=True)
            x = to_float(x) if x.dtype == torch.uint8 else x.float()
            with torch.autocast(device.type, enabled=amp):
                out = model(x)
            probs.append(out.probs.float().cpu())
            zs.append(nn.functional.normalize(out.z.float(), dim=1).cpu())
            hs.append(out.h.float().cpu())
    finally:
        model.train(was_training)
    return {
        "probs": torch.cat(probs).numpy(),
        "z": torch.cat(zs).numpy(),
        "h": torch.cat(hs).numpy(),
    }


def embed_all(model: ClusterModel, inputs: Tensor, device: torch.device, batch_size: int = 1024,
              amp: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    """:func:`embed` over the whole data set, sharded over DDP processes and gathered on every rank.

    Each process embeds a contiguous part; every rank gets all rows in data-set order (methods'
    epoch hooks, e.g. GCC's graph, need them on every rank). Plain ``embed`` in one process.
    """
    lo, hi = distributed.shard_range(len(inputs))
    emb = embed(model, inputs[lo:hi], device, batch_size, amp)
    return {key: distributed.gather_rows(value, len(inputs)) for key, value in emb.items()}


class _NullWriter(RunWriter):
    """What a DDP rank other than 0 holds: same interface, writes nothing, never sees a STOP file."""

    def __init__(self, run_dir: Path) -> None:  # no super().__init__: that creates the directory
        self.dir = Path(run_dir)
        self._status = {}

    def write_config(self, config: dict[str, Any]) -> None:
        pass

    def append_metrics(self, row: dict[str, Any]) -> None:
        pass

    def set_status(self, state: str, **fields: Any) -> None:
        pass

    def write_predictions(self, **arrays: np.ndarray) -> None:
        pass

    def stop_requested(self) -> bool:
        return False

    def clear_stop_request(self) -> None:
        pass


def evaluation_row(data: DataSet, emb: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    probs = emb["probs"]
    preds = probs.argmax(axis=1)
    metrics = evaluate(data.labels, preds, probs)
    predictions = {
        "index": np.arange(len(preds)),
        "cluster": preds.astype(np.int32),
        "confidence": probs.max(axis=1).astype(np.float32),
        "label": (data.labels if data.labels is not None else np.full(len(preds), -1)).astype(np.int32),
        "probs": probs.astype(np.float32),
        "z": emb["z"].astype(np.float16),
        "h": emb["h"].astype(np.float16),
    }
    return metrics, predictions


# ----------------------------------------------------------------------------- the trainer


class _StopFlag:
    """Set by SIGTERM/SIGINT or a STOP file; the loop checks it between steps."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        self.reason = f"signal {signal.Signals(signum).name}"


@dataclass
class TrainResult:
    run_dir: Path
    state: str
    epoch: int
    step: int
    metrics: dict[str, Any] = field(default_factory=dict)
    rank: int = 0  # the DDP rank that returns this (only rank 0 wrote the run directory)


def _build(config: TrainConfig, data: DataSet, device: torch.device) -> nn.Module:
    method_cls = get_method(config.method)
    params = resolve_params(method_cls, config.method_params)
    input_shape = tuple(data.inputs.shape[1:])
    backbone = build_backbone(config.backbone, input_shape, config.image_size)
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


def _optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)


def epoch_permutation(seed: int, epoch: int, n: int) -> Tensor:
    """The sample order of an epoch: a pure function of (seed, epoch), so resume is exact."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def load_run_config(run_dir: Path) -> TrainConfig:
    data = read_config(run_dir)
    if data is None:
        raise ConfigError(f"{str(run_dir)!r} has no readable config.json; is it a run directory?")
    return TrainConfig.from_dict(data)


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool | None = None,
    on_step: StepCallback | None = None,
    data: DataSet | None = None,
) -> TrainResult:
    """Train a run (new from ``config``, or continued from the run directory ``resume``).

    ``overrides`` (budget fields such as epochs, minutes, max_steps) apply on resume.
    ``on_step(step, parts)`` is called after every optimiser step with the float loss parts.

    Multi-process: under torchrun (or inside an already initialised process group) every process
    calls this; ``config.batch_size`` is the global batch, each process trains on its slice with
    DDP, the batch-level losses see the global batch, and rank 0 alone writes the run directory.
    ``on_step`` runs on every rank; ``TrainResult.rank`` says which one returned.
    """
    # Under torchrun every process runs this function; rank 0 alone touches the run directory.
    owns_group = distributed.init()
    try:
        return _train(config, resume, overrides, progress, on_step, data)
    finally:
        distributed.shutdown(owns_group)


def _train(
    config: TrainConfig | None,
    resume: str | Path | None,
    overrides: dict[str, Any] | None,
    progress: bool | None,
    on_step: StepCallback | None,
    data: DataSet | None,
) -> TrainResult:
    is_main, world, rank = distributed.is_main(), distributed.world_size(), distributed.rank()
    if resume is not None:
        run_dir = Path(resume)
        # Read by rank 0 and broadcast: other nodes need not see the run directory.
        config = distributed.on_main(lambda: load_run_config(run_dir))
        for key, value in (overrides or {}).items():
            setattr(config, key, value)
        config.world_size = world  # the run continues on this many processes
        config.check()
        _split_batch(config, explicit=True)
    elif config is None:
        raise ConfigError("train() needs a config or a run directory to resume")
    else:
        config.check()
        config.world_size = world
        run_dir = None
    if config.threads:
        torch.set_num_threads(config.threads)
    device = distributed.place(pick_device(config.device))

    if data is None:
        data = load_dataset(config.dataset, config.root, config.split, config.image_size, config.download,
                            label_column=config.label_column, num_clusters=config.num_clusters)
    if resume is None:
        config = resolve_config(config, data)

        def claim_run_dir() -> str:  # rank 0 names the run (ids are random) and checks the folder
            run_id = config.run_id or new_run_id(config.method, config.dataset)
            path = Path(config.out) / run_id
            if path.exists() and any(path.iterdir()):
                raise ConfigError(f"run directory {str(path)!r} already exists; pick another --run-id or --resume it")
            return run_id

        config.run_id = distributed.on_main(claim_run_dir)
        run_dir = Path(config.out) / config.run_id
    assert run_dir is not None
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    import random

    random.seed(config.seed)

    method = _build(config, data, device)
    model: ClusterModel = method.model
    # DDP (and SyncBN) around the step when world_size > 1, before the optimizer sees the parameters.
    step_fn = distributed.wrap(method, device, sync_bn=config.sync_bn)
    optimizer = _optimizer(config, method.parameters())
    scheduler = _scheduler(config, optimizer)
    use_amp = device.type == "cuda" and config.amp != "off"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    views = ViewMaker(config, data, device, rank=rank)
    writer = RunWriter(run_dir) if is_main else _NullWriter(run_dir)

    epoch, step, batch_in_epoch = 0, 0, 0
    best_value: float | None = None
    epoch_sums: dict[str, float] = {}
    epoch_batches = 0
    if resume is not None:
        from clustering.runs import checkpoint_path

        def read_last() -> dict[str, Any]:
            last = checkpoint_path(run_dir, "last")
            if last is None:
                raise ConfigError(f"{str(run_dir)!r} has no checkpoints/last.pt to resume from")
            # Under DDP rank 0 reads and broadcasts it (on the CPU; load_state_dict moves it).
            return load_checkpoint(last, map_location=device if world == 1 else "cpu")

        ckpt = distributed.on_main(read_last)
        method.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt and use_amp:
            scaler.load_state_dict(ckpt["scaler"])
        rng_ranks = ckpt.get("rng_ranks") or []
        restore_rng(rng_ranks[rank] if len(rng_ranks) == world else ckpt["rng"], views.generator)
        if rank > 0 and len(rng_ranks) != world:
            # Resumed on another number of processes: rank 0 continues the saved stream, the others
            # start fresh ones (not bit-exact then, but each rank still augments independently).
            views.generator.manual_seed(config.seed + 1 + 1_000_003 * rank + ckpt["step"])
        epoch, step, batch_in_epoch = ckpt["epoch"], ckpt["step"], ckpt.get("batch_in_epoch", 0)
        best_value = ckpt.get("best_value")
        epoch_sums = dict(ckpt.get("epoch_sums", {}))
        epoch_batches = ckpt.get("epoch_batches", 0)
        writer.clear_stop_request()
    else:
        writer.write_config(config.to_dict())
    # Budgets count from this process's start; on resume, --minutes is the extra time allowed.
    start_time = time.time()
    writer.set_status("running", step=step, epoch=epoch, device=str(device), run_id=run_dir.name,
                      resumed=resume is not None, world_size=world)  # fmt: skip

    stop = _StopFlag()
    old_handlers = {}
    if _main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old_handlers[sig] = signal.signal(sig, stop)

    n = len(data)
    steps_per_epoch = n // config.batch_size  # drop_last: every batch has full size
    inputs_on_device = data.inputs.to(device) if device.type == "cuda" and data.inputs.numel() < 2**30 else data.inputs
    show = (sys.stderr.isatty() if progress is None else progress) and is_main
    last_eval: dict[str, Any] = {}
    last_eval_step = -1
    last_ckpt_time = time.time()
    last_heartbeat = 0.0

    def run_eval() -> dict[str, Any]:
        nonlocal best_value, last_eval, last_eval_step
        emb = embed_all(model, inputs_on_device, device, config.eval_batch_size, use_amp)
        parts = {k: v / max(epoch_batches, 1) for k, v in epoch_sums.items()}

        def score() -> tuple[dict[str, Any], Any]:  # rank 0: metrics, files, and the best-metric value
            metrics, predictions = evaluation_row(data, emb)
            row = {"epoch": epoch, "step": step, "time": time.time(), "elapsed": time.time() - start_time,
                   "lr": optimizer.param_groups[0]["lr"], **parts,
                   **{k: metrics[k] for k in SCALAR_KEYS}, "cluster_sizes": metrics["cluster_sizes"]}  # fmt: skip
            writer.append_metrics(row)
            writer.write_predictions(**predictions)
            return row, row.get(config.best_metric) if config.best_metric != "loss" else parts.get("loss")

        # Rank 0's verdict for every rank: saving best.pt is a collective step under DDP.
        row, value = distributed.on_main(score)
        if value is not None:
            better = best_value is None or (value < best_value if config.best_metric == "loss" else value > best_value)
            if better:
                best_value = value
                save("best")
        last_eval, last_eval_step = row, step
        return row

    def save(which: str) -> None:
        nonlocal last_ckpt_time
        rng = capture_rng(views.generator)
        # Every rank's augmentation stream, so a DDP run resumes exactly on the same world size.
        rng_ranks = distributed.all_gather_object(rng) if world > 1 else None
        if which == "last":
            last_ckpt_time = time.time()
        if not is_main:
            return
        payload = {
            "config": json.loads(json.dumps(config.to_dict())), "model": method.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng, "epoch": epoch,
            "step": step, "batch_in_epoch": batch_in_epoch, "best_value": best_value,
            "epoch_sums": dict(epoch_sums), "epoch_batches": epoch_batches,
        }  # fmt: skip
        if rng_ranks is not None:
            payload["rng_ranks"] = rng_ranks
        if use_amp:
            payload["scaler"] = scaler.state_dict()
        save_checkpoint(writer.checkpoint_dir / f"{which}.pt", payload)

    def out_of_budget() -> str | None:
        if config.max_steps is not None and step >= config.max_steps:
            return "max_steps"
        if config.minutes is not None and time.time() - start_time >= config.minutes * 60:
            return "time budget"
        return None

    halt_reasons = {1: "stop requested", 2: "time budget", 3: "max_steps"}  # higher code wins across ranks

    def agreed_halt(with_stop: bool) -> tuple[int, bool]:
        """(halt code, last.pt due) with the same answer on every rank.

        Under DDP any rank may receive a signal, rank 0 alone sees the STOP file and times the
        checkpoints, and clocks differ; one small all-reduce makes all ranks stop (or save) at the
        same step, as a collective step requires. Plain local checks in one process.
        """
        budget = out_of_budget()
        code = 3 if budget == "max_steps" else 2 if budget else 0
        if not code and with_stop and (stop.reason or writer.stop_requested()):
            code = 1
        due = int(with_stop and is_main and time.time() - last_ckpt_time > config.checkpoint_minutes * 60)
        code, due = distributed.max_ints([code, due])
        return code, bool(due)

    state, reason = "finished", "epochs done"
    bar = None
    try:
        if step == 0 and batch_in_epoch == 0 and resume is None:
            save("last")  # a run always has a checkpoint, even if stopped in its first step
        method.train()
        while epoch < config.epochs:
            hook = getattr(method, "on_epoch_start", None)
            if hook is not None and batch_in_epoch == 0:
                hook(EpochContext(epoch=epoch, device=device, num_samples=n,
                                  embed=lambda: embed_all(model, inputs_on_device, device, config.eval_batch_size,
                                                          use_amp)))  # fmt: skip
            order = epoch_permutation(config.seed, epoch, n)
            if show:
                from tqdm import tqdm

                bar = tqdm(total=steps_per_epoch, initial=batch_in_epoch, desc=f"epoch {epoch + 1}", leave=False,
                           dynamic_ncols=True)  # fmt: skip
            halt = 0
            while batch_in_epoch < steps_per_epoch:
                halt, save_due = agreed_halt(with_stop=True)
                if halt:
                    break
                if save_due:  # the state after the previous step, saved before the next one
                    save("last")
                idx = order[batch_in_epoch * config.batch_size : (batch_in_epoch + 1) * config.batch_size]
                idx = distributed.shard(idx)  # this rank's contiguous slice of the global batch
                x = inputs_on_device[idx.to(inputs_on_device.device)].to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=use_amp):
                    out = step_fn(Batch(inputs=x, indices=idx.to(device), views=views,
                                        dataset_inputs=inputs_on_device, gather=distributed.gather))
                loss = out.loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step + 1} (epoch {epoch + 1})")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                batch_in_epoch += 1
                parts = {"loss": float(loss.detach())} | {k: float(v.detach()) for k, v in out.parts.items()}
                for k, v in parts.items():
                    epoch_sums[k] = epoch_sums.get(k, 0.0) + v
                epoch_batches += 1
                if on_step is not None:
                    on_step(step, parts)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{parts['loss']:.4f}", acc=_fmt(last_eval.get("acc")))
                now = time.time()
                if now - last_heartbeat > 2.0:
                    writer.heartbeat(step=step, epoch=epoch, epoch_progress=batch_in_epoch / steps_per_epoch,
                                     loss=parts["loss"])  # fmt: skip
                    last_heartbeat = now
            if bar is not None:
                bar.close()
                bar = None
            if batch_in_epoch < steps_per_epoch:  # interrupted mid-epoch
                if halt >= 2:
                    reason = halt_reasons[halt]
                else:
                    state = "stopped"
                    reason = stop.reason or "stop requested"
                break
            epoch += 1
            batch_in_epoch = 0
            scheduler.step()
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                row = run_eval()
                if is_main:
                    _log_epoch(row, show)
            epoch_sums, epoch_batches = {}, 0
            save("last")
            halt, _ = agreed_halt(with_stop=False)
            if halt:
                reason = halt_reasons[halt]
                break
        if last_eval_step != step:
            run_eval()
        save("last")
        writer.set_status(state, step=step, epoch=epoch, reason=reason)
    except BaseException as exc:
        if bar is not None:
            bar.close()
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt):
            writer.set_status("stopped", step=step, epoch=epoch, reason="interrupted")
        else:
            # The model may be corrupt (NaN), so last.pt is left as the last good checkpoint.
            writer.set_status("failed", step=step, epoch=epoch, error=message,
                              traceback=traceback.format_exc(limit=20))  # fmt: skip
        raise
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    return TrainResult(run_dir=run_dir, state=state, epoch=epoch, step=step, metrics=last_eval, rank=rank)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _log_epoch(row: dict[str, Any], show: bool) -> None:
    keys = ("loss", "acc", "nmi", "ari", "jsd", "confidence", "n_nonempty")
    text = " ".join(f"{k}={_fmt(row.get(k)) if k != 'n_nonempty' else row.get(k)}" for k in keys if k in row)
    print(f"epoch {row['epoch']:>4} step {row['step']:>6} {text}", flush=True, file=sys.stderr if show else sys.stdout)


def evaluate_run(run_dir: Path, split: str | None = None, which: str = "best", root: str | None = None,
                 device: str = "auto") -> dict[str, Any]:  # fmt: skip
    """Re-evaluate a run's checkpoint, optionally on another split (inductive evaluation)."""
    from clustering.runs import checkpoint_path

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    path = checkpoint_path(run_dir, which) or checkpoint_path(run_dir, "last")
    if path is None:
        raise ConfigError(f"{str(run_dir)!r} has no checkpoint to evaluate")
    dev = pick_device(device)
    ckpt = load_checkpoint(path, map_location=dev)
    data = load_dataset(config.dataset, root or config.root, split or config.split, config.image_size,
                        label_column=config.label_column, num_clusters=config.num_clusters)
    method = _build(config, data, dev)
    try:
        method.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ConfigError(f"checkpoint {str(path)!r} does not match the run's config: {str(exc)[:300]}") from None
    emb = embed(method.model, data.inputs, dev, config.eval_batch_size)
    metrics, _ = evaluation_row(data, emb)
    metrics.update(checkpoint=str(path), split=split or config.split, epoch=ckpt["epoch"], step=ckpt["step"],
                   num_samples=len(data))  # fmt: skip
    return metrics


os.environ.setdefault("KMP_WARNINGS", "0")
