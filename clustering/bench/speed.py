"""``bench speed`` (where a training step's time goes) and ``bench distributed`` (DDP throughput)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from clustering.bench.runner import load_native, usable_cores
from clustering.bench.tables import markdown
from clustering.errors import UserError


def cmd_speed(args: argparse.Namespace) -> int:
    """Where a training step's time goes: augmentation vs forward/backward/optimiser."""
    import torch

    from clustering.config import TrainConfig
    from clustering.setup import pick_device, prepare_data, resolve_config
    from clustering.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_native(args.dataset, args.root)
    device = pick_device(args.device)
    config = resolve_config(TrainConfig(method=args.method, dataset=args.dataset, backbone=args.backbone,
                                        batch_size=args.batch_size, image_size=args.image_size, amp=args.amp,
                                        channels_last=args.channels_last, device=args.device),
                            data, device.type)  # fmt: skip
    trainer = Trainer(config, prepare_data(config, data), device)
    aug_time = 0.0
    weak = trainer.views.weak

    def timed_weak(x):  # noqa: ANN001, ANN202
        nonlocal aug_time
        t0 = time.perf_counter()
        out = weak(x)
        aug_time += time.perf_counter() - t0
        return out

    trainer.views.weak = timed_weak  # type: ignore[method-assign]
    total = 0.0
    generator = torch.Generator().manual_seed(0)
    for i in range(args.steps + 2):
        idx = torch.randint(0, len(data), (config.batch_size,), generator=generator)
        if i == 2:  # two warm-up steps
            aug_time, total = 0.0, 0.0
        t0 = time.perf_counter()
        trainer.step(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        total += time.perf_counter() - t0
    steps = args.steps
    per_step = total / steps
    precision = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32"
    layout = "channels_last" if trainer.channels_last else "contiguous"
    print(f"{args.method} on {args.dataset} ({config.image_size} px), backbone {config.backbone}, "
          f"batch {config.batch_size}, {torch.get_num_threads()} threads, device {device}, {precision}, {layout}")
    print(f"  step            {per_step * 1000:8.1f} ms  ({config.batch_size / per_step:7.0f} images/s)")
    print(f"  augmentation    {aug_time / steps * 1000:8.1f} ms  ({100 * aug_time / total:4.1f}%)")
    print(f"  forward/backward/optimiser {(total - aug_time) / steps * 1000:8.1f} ms  "
          f"({100 * (total - aug_time) / total:4.1f}%)")  # fmt: skip
    print(f"  epoch of {len(data)} samples ~ {per_step * (len(data) // config.batch_size):.1f} s")
    return 0


# ----------------------------------------------------------------------------- distributed (DDP) throughput


def _distributed_worker(rank: int, nproc: int, port: int, options: dict[str, Any], out: str) -> None:
    """One process of ``bench distributed``: joins the group as torchrun would, times training steps."""
    import json
    import os

    import torch

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(options["threads"])
    from clustering import distributed
    from clustering.config import TrainConfig
    from clustering.setup import pick_device, prepare_data, resolve_config
    from clustering.trainer import Trainer, epoch_permutation

    created = distributed.init()  # the trainer's own initialisation (gloo on CPU, NCCL for CUDA tensors)
    try:
        data = load_native(options["dataset"], options["root"])
        device = distributed.place(pick_device(options["device"]))
        config = resolve_config(TrainConfig(method=options["method"], dataset=options["dataset"],
                                            backbone=options["backbone"], batch_size=options["batch_size"],
                                            image_size=options["image_size"], world_size=nproc),
                                data, device.type)  # fmt: skip
        trainer = Trainer(config, prepare_data(config, data), device, distributed.rank(), nproc)
        order = epoch_permutation(config.seed, 0, len(data)).repeat(options["steps"] + 3)
        trainer.method.train()
        start = 0.0
        for i in range(options["steps"] + 2):
            if i == 2:  # two warm-up steps, then every process starts the clock together
                if distributed.is_distributed():
                    torch.distributed.barrier()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            trainer.step(order[i * config.batch_size : (i + 1) * config.batch_size])
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = distributed.max_ints([int((time.perf_counter() - start) * 1e6)])[0] / 1e6  # the slowest rank
        if distributed.is_main():
            Path(out).write_text(json.dumps({"seconds": seconds, "batch_size": config.batch_size,
                                             "backbone": config.backbone, "device": str(device),
                                             "shape": list(data.inputs.shape[1:])}))  # fmt: skip
    finally:
        distributed.shutdown(created)


def cmd_distributed(args: argparse.Namespace) -> int:
    """Training images/s with 1, 2, ... DDP processes on this machine (same global batch each time)."""
    import json
    import socket
    import tempfile

    import torch.multiprocessing as mp

    counts = [int(c) for c in args.nproc.split(",") if c.strip()]
    if not counts or min(counts) < 1:
        raise UserError(f"--nproc expects process counts such as 1,2; got {args.nproc!r}")
    cores = usable_cores()
    rows = []
    for nproc in counts:
        # By default every run gets the same cores in total, split over its processes.
        threads = args.threads or max(1, cores // nproc)
        options = {"dataset": args.dataset, "root": args.root, "method": args.method, "backbone": args.backbone,
                   "batch_size": args.batch_size, "image_size": args.image_size, "steps": args.steps,
                   "threads": threads, "device": args.device}  # fmt: skip
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "result.json")
            mp.start_processes(_distributed_worker, args=(nproc, port, options, out), nprocs=nproc,
                               start_method="spawn")  # fmt: skip
            res = json.loads(Path(out).read_text())
        per_step = res["seconds"] / args.steps
        rows.append({"nproc": nproc, "batch/proc": res["batch_size"] // nproc, "threads/proc": threads,
                     "step ms": per_step * 1000, "images/s": res["batch_size"] / per_step})  # fmt: skip
        print(f"{nproc} process(es): {rows[-1]['images/s']:.0f} images/s", flush=True)
    base = rows[0]["images/s"]
    for row in rows:
        row["speed-up"] = f"{row['images/s'] / base:.2f}x"
    print(f"\n{args.method} on {args.dataset} {tuple(res['shape'])}, backbone {res['backbone']}, global batch "
          f"{res['batch_size']}, {args.steps} timed steps, device {res['device']}, {cores} cores, "
          f"backend {'nccl' if res['device'].startswith('cuda') else 'gloo'}\n")  # fmt: skip
    print(markdown(rows, ("nproc", "batch/proc", "threads/proc", "step ms", "images/s", "speed-up")), flush=True)
    return 0
