"""Command line: ``python -m clustering train|eval|methods|datasets|bench ...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from clustering.errors import UserError

# Method-parameter shortcuts: flag -> name in the method's Params.
PARAM_FLAGS = {
    "pos_conf": "--pos-conf",
    "tolerance": "--tolerance",
    "khop": "--khop",
    "variant": "--variant",
    "cluster_temperature": "--cluster-temperature",
    "instance_temperature": "--instance-temperature",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a parse error is one line (no usage block) with exit code 2, like every other
    user error; the values themselves are checked by :mod:`clustering.rules`, not by argparse."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog.split()[-1]}: {message}\n")


def one_of(field: str) -> str:
    """Help text listing a field's valid values, from its rule."""
    from clustering.rules import FIELD_RULES, Choices

    rule = FIELD_RULES[field]
    assert isinstance(rule, Choices)
    return "one of " + ", ".join(rule.valid())


def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to train")
    g.add_argument("--method", default="uccc", help="registered method (see `methods`); default uccc")
    g.add_argument("--dataset", default="digits", help="data source (see `datasets`); default digits")
    g.add_argument("--root", help="data root folder (or file for vectors)")
    g.add_argument("--label-column", help="vectors: the csv/parquet column (or npz array) holding the labels")
    g.add_argument("--split", default="both", help="train, test or both (transductive, the default)")
    g.add_argument("--download", action="store_true", help="let torchvision download the data set")
    g.add_argument("--image-size", type=int, help="resize images once at load (default: per data set)")
    g.add_argument("--augment", help="augmentation preset (default: from the data); " + one_of("augment"))
    g.add_argument("--backbone", help="default: per data set and method; " + one_of("backbone"))
    g.add_argument("--num-clusters", type=int, help="number of clusters (default: number of classes)")
    g = p.add_argument_group("budget and optimisation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--minutes", type=float, help="wall-clock budget; the run ends cleanly when it is spent")
    g.add_argument("--max-steps", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--optimizer", help=one_of("optimizer"))
    g.add_argument("--scheduler", help=one_of("scheduler"))
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help=one_of("device"))
    g.add_argument("--amp", default="auto",
                   help="mixed precision: float16 on CUDA, bfloat16 on a CPU with native bf16 (auto: both); "
                        + one_of("amp"))
    g.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory for the backbone (default: on for images)")
    g.add_argument("--threads", type=int, help="torch CPU threads")
    g.add_argument("--refit-head", dest="refit_head", action=argparse.BooleanOptionalAction, default=None,
                   help="when the run finishes, re-centre the head's clusters in the backbone features "
                        "(spherical k-means from its partition; default: on below 100 images per cluster)")
    g.add_argument("--split-merge", dest="split_merge", action=argparse.BooleanOptionalAction, default=None,
                   help="when the run finishes, rejoin a class split over two clusters and part two classes "
                        "sharing one where that raises the k-means objective in the backbone features "
                        "(default: on from 3 clusters)")
    g.add_argument("--umap-gmm", dest="umap_gmm", action=argparse.BooleanOptionalAction, default=None,
                   help="when the run finishes, a Gaussian mixture on a UMAP embedding of the backbone features "
                        "replaces the head's partition (default: on for CC, SACC and GCC, whose head trains under "
                        "a uniform prior on cluster sizes; they then skip the refit, restarts and moves)")
    g.add_argument("--umap-gmm-if-uneven", dest="umap_gmm", action="store_const", const="if_uneven",  # IF_UNEVEN
                   help="the same, only where the head's largest cluster holds more than 1.3 times the mean when "
                        "the run finishes (default for UCCC, whose head keeps the classes' size differences); "
                        "an even head keeps its own end (refit, moves)")
    g.add_argument("--kmeans-restarts", dest="kmeans_restarts", type=int, default=None, metavar="N",
                   help="when the run finishes, run k-means in the backbone features from N k-means++ starts and "
                        "keep the best where its objective beats the head's partition (0: off; default: 10 for "
                        "the methods whose head trains under a uniform prior on cluster sizes, CC, SACC, GCC)")
    g.add_argument("--no-sync-bn", dest="sync_bn", action="store_false",
                   help="under torchrun (DDP), keep batch-norm statistics per process instead of global")
    g.add_argument("--eval-every", type=int,
                   help="evaluate (metrics row, predictions, last.pt) every N epochs (default: after an epoch "
                        "once the training since the last evaluation took 20x as long as it did)")
    g.add_argument("--best-metric", default="loss",
                   help="what best.pt tracks (loss needs no labels); " + one_of("best_metric"))
    g.add_argument("--projections", default="umap+tsne",
                   help="2-D maps of z written when the run ends, for the studio (none: skip); "
                        + one_of("projections"))
    g.add_argument("--self-label", type=float, metavar="FRACTION",
                   help="self-labelling stage from this fraction of the run on (0-1; off by default): "
                        "confident weak views label strong views, for any image method")
    g.add_argument("--self-label-threshold", type=float, default=0.95,
                   help="confidence above which a weak view's cluster becomes a pseudo-label")
    g.add_argument("--self-label-weight", type=float, default=1.0, help="weight of the self-labelling loss")
    g = p.add_argument_group("method parameters")
    g.add_argument("--pos-conf", type=float, help="UCCC positive threshold (overrides --tolerance)")
    g.add_argument("--tolerance", type=float, help="UCCC tolerant parameter t: pos_conf = 1 - 2t/C")
    g.add_argument("--khop", type=int, help="UCCC k-hop graph fusion")
    g.add_argument("--variant", help="UCCC cluster loss: cosine (default) or paper (literal Eq. 6)")
    g.add_argument("--cluster-temperature", type=float)
    g.add_argument("--instance-temperature", type=float)
    g.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any method parameter, repeatable (see `methods`)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default="runs", help="folder holding run directories")
    g.add_argument("--run-id", help="name of the run directory (default: time-method-dataset-random)")
    g.add_argument("--config", help="a config.json to start from (flags override it)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or crashed run")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")


def _method_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in PARAM_FLAGS:
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    for item in args.param:
        if "=" not in item:
            raise UserError(f"--param expects NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key.strip().replace("-", "_")] = value.strip()
    return params


def config_from_args(args: argparse.Namespace):  # noqa: ANN202
    from clustering.config import TrainConfig

    base = TrainConfig.load(Path(args.config)) if args.config else TrainConfig()
    for key in ("method", "dataset", "root", "label_column", "split", "download", "image_size", "augment",
                "backbone", "num_clusters", "epochs", "minutes", "max_steps", "batch_size", "lr", "weight_decay",
                "optimizer", "scheduler", "seed", "device", "amp", "channels_last", "threads", "eval_every",
                "best_metric", "out", "run_id", "sync_bn", "self_label", "self_label_threshold",
                "self_label_weight", "refit_head", "split_merge", "kmeans_restarts", "umap_gmm",
                "projections"):  # fmt: skip
        if args.config and key not in getattr(args, "explicit", set()):
            continue  # keep the config file's value unless the flag was given (at any value)
        setattr(base, key, getattr(args, key))
    base.method_params = {**base.method_params, **_method_params(args)}
    return base


def cmd_train(args: argparse.Namespace) -> int:
    from clustering.train import train

    progress = False if args.no_progress else None
    if args.resume:
        overrides = {k: getattr(args, k) for k in ("epochs", "minutes", "max_steps") if getattr(args, k) is not None}
        result = train(resume=args.resume, overrides=overrides, progress=progress, exit_after=True)
    else:
        result = train(config_from_args(args), progress=progress, exit_after=True)
    if result.rank != 0:  # under torchrun every process trains; rank 0 reports
        return 0
    m = result.metrics
    summary = " ".join(f"{k}={m[k]:.4f}" for k in ("acc", "nmi", "ari", "jsd") if isinstance(m.get(k), float))
    print(f"{result.state}: {result.run_dir} (epoch {result.epoch}, step {result.step}) {summary}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from clustering.train import evaluate_run

    metrics = evaluate_run(Path(args.run_dir), split=args.split, which=args.checkpoint, root=args.root,
                           device=args.device, refit_head=args.refit_head, split_merge=args.split_merge,
                           kmeans_restarts=args.kmeans_restarts, umap_gmm=args.umap_gmm)  # fmt: skip
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("mapping", "purity")}, indent=2))
        return 0
    print(f"checkpoint {metrics['checkpoint']} (epoch {metrics['epoch']}, step {metrics['step']}), "
          f"split {metrics['split']}, {metrics['num_samples']} samples")  # fmt: skip
    for key in ("acc", "nmi", "ari", "jsd", "confidence"):
        value = metrics.get(key)
        print(f"  {key:<11}{'n/a (no labels)' if value is None else f'{value:.4f}'}")
    print(f"  non-empty  {metrics['n_nonempty']} / {len(metrics['cluster_sizes'])} clusters")
    if "largest_over_mean_at_end" in metrics:
        applied = "umap_gmm_kept" in metrics
        print(f"  the head's largest cluster held {metrics['largest_over_mean_at_end']:.2f} times the mean: "
              f"{'uneven, UMAP + GMM applied' if applied else 'even, no UMAP + GMM'}")  # fmt: skip
    if "as_trained" in metrics:
        before = metrics["as_trained"]
        shown = " ".join(f"{k} {v:.4f}" for k, v in before.items() if k != "n_nonempty" and v is not None)
        moves = int(metrics.get("split_merge_moves", 0))
        done = (["UMAP + GMM"] if "umap_gmm_kept" in metrics else []) + \
            (["head refit"] if "refit_iterations" in metrics else []) + \
            (["a k-means restart"] if metrics.get("restarts_won") else []) + \
            ([f"{moves} split-and-merge move{'s' if moves > 1 else ''}"] if moves else [])
        print(f"  {' + '.join(done)}: {metrics['refit_moved']:.1%} of the samples changed cluster; as trained: "
              f"{shown}, {before['n_nonempty']} non-empty")  # fmt: skip
    elif "split_merge_moves" in metrics or "restarts_won" in metrics:
        print("  no k-means restart or split-and-merge move raises the k-means objective; the head is as trained")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from clustering.methods import backbone_overrides, default_params, get_method, method_names

    for name in method_names():
        cls = get_method(name)
        print(f"{name:<7} {cls.description}")
        train_defaults = ", ".join(f"{k}={v}" for k, v in cls.train_defaults.general().items())
        print(f"        training: {train_defaults}")
        params = ", ".join(f"{k}={v}" for k, v in default_params(cls).items())
        print(f"        params:   {params}")
        if cls.param_rules:  # None above: chosen from the data's shape when the run starts
            print("        from the data where unset: " + ", ".join(cls.param_rules))
        for backbone, shown in backbone_overrides(cls).items():
            print(f"        on {backbone}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from clustering.data import get_source, source_names

    for name in source_names():
        spec = get_source(name)
        root = "needs --root" if spec.needs_root else "embedded"
        print(f"{name:<14} {spec.description} ({root})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m clustering", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a run (or --resume one)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    from clustering.rules import FIELD_RULES

    p = sub.add_parser("eval", help="re-evaluate a run's checkpoint, optionally on another split")
    p.add_argument("run_dir")
    p.add_argument("--split", help="train, test or both (default: the run's own)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--root", help="data root (default: the run's)")
    p.add_argument("--device", default="auto", choices=FIELD_RULES["device"].valid())  # type: ignore[union-attr]
    p.add_argument("--refit-head", action="store_true",
                   help="refit the head on the evaluated data first (the checkpoint file is not changed)")
    p.add_argument("--split-merge", action="store_true",
                   help="apply the end-of-run split-and-merge moves on the evaluated data first (after the refit "
                        "with --refit-head; the checkpoint file is not changed)")
    p.add_argument("--kmeans-restarts", type=int, default=0, metavar="N",
                   help="k-means in the backbone features from N k-means++ starts, kept where its objective "
                        "beats the head's partition (after the refit, before the moves; the file is not changed)")
    ends = p.add_mutually_exclusive_group()
    ends.add_argument("--umap-gmm", action="store_const", const=True, default=False,
                      help="a Gaussian mixture on a UMAP embedding of the backbone features replaces the head's "
                           "partition first (in place of --refit-head; the file is not changed)")
    ends.add_argument("--umap-gmm-if-uneven", dest="umap_gmm", action="store_const", const="if_uneven",  # IF_UNEVEN
                      help="--umap-gmm only where the head's largest cluster holds more than 1.3 times the mean "
                           "(UCCC's end of a run), else the other steps given")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("methods", help="list the registered methods and their defaults")
    p.set_defaults(func=cmd_methods)
    p = sub.add_parser("datasets", help="list the data sources")
    p.set_defaults(func=cmd_datasets)

    from clustering.bench import add_bench_parser

    add_bench_parser(sub)
    return parser


def given_train_flags(argv: list[str]) -> set[str]:
    """The ``train`` options named on the command line (``argv`` after ``train``), whatever their
    values: an option given at its default must still override ``--config``."""
    probe = argparse.ArgumentParser(add_help=False)
    _add_train_args(probe)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    known, _ = probe.parse_known_args(argv)
    return set(vars(known))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a parse error, already printed as one line (2)
        return int(exc.code or 0)
    if args.command == "train":
        args.explicit = given_train_flags(argv[argv.index("train") + 1 :])
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except FloatingPointError as exc:
        print(f"error: training diverged: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
