"""The ``bench`` subcommand's parser: every benchmark's flags, defaults and help."""

from __future__ import annotations

import argparse

from clustering.bench.experiments import DEGENERACY_VARIANTS, cmd_degeneracy, cmd_lnscc_ceiling
from clustering.bench.faults import cmd_faults
from clustering.bench.lnscc_ceiling import CONFIGS as LNSCC_CONFIGS
from clustering.bench.quality import cmd_ablation, cmd_quality
from clustering.bench.speed import cmd_distributed, cmd_speed


def _at_least_one(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _add_common(p: argparse.ArgumentParser) -> None:
    """The training runs' flags, shared by quality, ablation and degeneracy."""
    p.add_argument("--root", help="data root for data sets other than digits")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per run")
    p.add_argument("--epochs", type=int, help="epoch cap per run (default: only the time budget)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--eval-every", type=int, help="evaluate every N epochs (default: by time, as train)")
    p.add_argument("--results", default="bench_results", help="folder for CSV/markdown and runs")
    p.add_argument("--name", help="file stem of the tables")
    p.add_argument("--image-size", type=int, help="train at this resolution (baselines keep the native one)")
    p.add_argument("--jobs", type=_at_least_one, default=1,
                   help="training runs at once, each in its own process (threads per run: cores / jobs)")


def _add_quality_parsers(bsub: argparse._SubParsersAction) -> None:
    """``bench quality`` and ``bench ablation``: trained methods in tables."""
    p = bsub.add_parser("quality", help="methods vs raw-pixel baselines: ACC/NMI/ARI/JSD per seed")
    p.add_argument("--datasets", default="digits",
                   help="data sources, folders (ImageFolder) or 'suite', comma-separated; --root serves those "
                        "that need files (for the suite: the folder holding mnist-test and cifar10-test)")
    p.add_argument("--methods", default="uccc")
    p.add_argument("--no-baselines", action="store_true")
    _add_common(p)
    p.set_defaults(func=cmd_quality)

    p = bsub.add_parser("ablation", help="UCCC ablations: literal vs cosine, temperature, k-hop, tolerance t")
    p.add_argument("--dataset", default="digits", help="data source(s), comma-separated: each config on each")
    p.add_argument("--groups", default="variant,temperature,khop,tolerance")
    p.add_argument("--configs", help="only these labels of the groups, comma-separated (e.g. t=2,t=3)")
    _add_common(p)
    p.set_defaults(func=cmd_ablation)


def _add_speed_parsers(bsub: argparse._SubParsersAction) -> None:
    """``bench speed`` and ``bench distributed``: training throughput."""
    p = bsub.add_parser("speed", help="time per training step, split into augmentation and the rest")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--root")
    p.add_argument("--method", default="uccc")
    p.add_argument("--backbone")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"],
                   help="mixed precision: CUDA float16, CPU bfloat16 where the CPU has it (auto)")
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory for the backbone (default: on for images)")
    p.set_defaults(func=cmd_speed)

    p = bsub.add_parser("distributed", help="DDP training throughput (images/s) with 1, 2, ... processes")
    p.add_argument("--nproc", default="1,2", help="process counts to compare, e.g. 1,2,4")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--root")
    p.add_argument("--method", default="uccc")
    p.add_argument("--backbone")
    p.add_argument("--batch-size", type=int, default=256, help="global batch, split over the processes")
    p.add_argument("--image-size", type=int)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_distributed)


def _add_experiment_parsers(bsub: argparse._SubParsersAction) -> None:
    """``bench lnscc-ceiling`` and ``bench degeneracy``: experiments."""
    p = bsub.add_parser("lnscc-ceiling", help="LNSCC's pair objective over a free embedding table: its k-means ACC")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--root")
    p.add_argument("--configs", default="published,no-im-neg",
                   help="named LNSCC option sets (clustering.bench.lnscc_ceiling.CONFIGS): " + ", ".join(LNSCC_CONFIGS))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=2000, help="Adam steps on the free table (0: skip the table)")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="also train the network (LNSCC itself) this long per configuration and seed (0: skip)")
    p.add_argument("--threads", type=int, help="torch threads per network run")
    p.add_argument("--jobs", type=int, default=1, help="network runs at once")
    p.add_argument("--eval-every", type=int, help="network runs: evaluate every N epochs (default: by time)")
    p.add_argument("--pairs", type=int, default=20000, help="pairs per Adam step")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--results", default="bench_results")
    p.add_argument("--name")
    p.set_defaults(func=cmd_lnscc_ceiling)

    p = bsub.add_parser("degeneracy", help="UCCC vs CC without its entropy term: per-epoch ACC, JSD, clusters")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--variants", default="uccc,cc-no-entropy", help=f"any of {', '.join(DEGENERACY_VARIANTS)}")
    _add_common(p)
    p.set_defaults(func=cmd_degeneracy, eval_every=1, seeds=1)


def _add_faults_parser(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser("faults", help="kill (SIGKILL at each fault point), stop and resume runs: what survives")
    p.add_argument("--kills", type=int, default=20, help="runs killed with SIGKILL, then resumed")
    p.add_argument("--stops", type=int, default=20, help="runs stopped with SIGTERM, and as many with a STOP file")
    p.add_argument("--torchrun", type=int, default=2, help="2-process torchrun runs with one rank killed")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--image-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default="bench_results")
    p.add_argument("--name")
    p.set_defaults(func=cmd_faults)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print tables (quality, ablation, speed)")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    # The order here is the order ``bench --help`` lists them in.
    _add_quality_parsers(bsub)
    _add_speed_parsers(bsub)
    _add_experiment_parsers(bsub)
    _add_faults_parser(bsub)
