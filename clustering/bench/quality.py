"""``bench quality`` (methods vs raw-pixel baselines) and ``bench ablation`` (UCCC's options)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clustering.bench.baselines import baseline_rows
from clustering.bench.runner import Job, data_refs, load_native, run_jobs
from clustering.bench.tables import print_row, write_tables
from clustering.errors import UserError


def cmd_quality(args: argparse.Namespace) -> int:
    from clustering.methods import get_method

    refs = data_refs(args.datasets, args.root)
    datasets = [ref.label for ref in refs]
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        get_method(m)  # fail fast on unknown names
    seeds = list(range(args.seeds))
    results, name = Path(args.results), args.name or "quality"
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        """Print a finished row and rewrite the tables, so a stopped benchmark keeps its rows."""
        rows.append(row)
        print_row(row)
        write_tables(rows, results, name, echo=False)

    loaded, baselines = {}, []
    for ref in refs:
        loaded[ref.label] = load_native(ref.source, ref.root)
        if not args.no_baselines:  # raw pixels at the data set's own resolution
            for row in baseline_rows(loaded[ref.label], ref.label, seeds):
                add(row)
                baselines.append(row)
    jobs = [Job(ref.label, method, seed, "default", {}, {}, ref) for ref in refs for method in methods
            for seed in seeds]  # fmt: skip
    trained = run_jobs(jobs, args, loaded.__getitem__, add)
    ordered = [r for d in datasets for r in baselines + trained if r["dataset"] == d]
    write_tables(ordered, results, name)
    return 0


ABLATION_GROUPS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "variant": [("paper (literal Eq. 6)", {"variant": "paper"}), ("cosine tau=0.3", {"variant": "cosine"})],
    "temperature": [(f"cosine tau={t}", {"variant": "cosine", "cluster_temperature": t}) for t in (0.2, 0.3, 0.5, 1.0)],
    "khop": [(f"k={k}", {"khop": k}) for k in (1, 2, 3, 4)],
    # t = 4.5: pos_conf 0.1 at C = 10, +0.013 on digits, behind at 40 (README, "The absorbed minority styles").
    "tolerance": [(f"t={t}", {"tolerance": float(t)}) for t in (2, 3, 4, 4.5, 5, 6)],
    # The fix for the slow start and the collapse at 20-40 clusters (README, "UCCC at 10, 20 and 40 clusters").
    "logit-norm": [("logit_norm off", {"logit_norm": False}), ("logit_norm on", {"logit_norm": True}),
                   ("logit_norm affine", {"logit_norm": True, "logit_norm_affine": True})],
    "strong-view": [("two weak views (paper)", {"strong_view": False}), ("strong view", {"strong_view": True})],
    "neighbor-view": [("no neighbour view (paper)", {"neighbor_view": False}),
                      ("neighbour view from the start", {"neighbor_view": True, "neighbor_from": 0.0}),
                      ("neighbour view from 0.3 (default)", {"neighbor_view": True, "neighbor_from": 0.3}),
                      ("neighbour pairs on weak views from the start",
                       {"neighbor_view": True, "neighbor_from": 0.0, "neighbor_weak": True}),
                      ("neighbours as instance positives from 0.3",
                       {"neighbor_view": True, "neighbor_from": 0.3, "instance_positives": "neighbors"})],
    # The instance temperature at many clusters (README, "UCCC at 10 to 200 clusters").
    "instance-temperature": [("instance tau 0.5 (paper)", {"instance_temperature": 0.5}),
                             ("instance tau 0.2", {"instance_temperature": 0.2}),
                             ("instance tau from C (default)", {})],
    # SACC's cluster loss beside Eq. 6 (README, "The absorbed minority styles"), throughout or once
    # the head's clusters are balanced (README, "CC's cluster loss where the clusters are balanced").
    "cc-loss": [("Eq. 6 alone (paper)", {"cc_weight": 0.0, "cc_if_balanced": False}),
                ("Eq. 6 + CC's cluster loss", {"cc_weight": 1.0}),
                ("CC's cluster loss once balanced", {"cc_weight": 0.0, "cc_if_balanced": True})],
    # Clusters that stay empty (README, "UCCC at 10 to 200 clusters").
    "reseed": [("no reseeding", {"reseed_empty": False}),
               ("reseed empty, not at the end", {"reseed_empty": True, "reseed_final": False}),
               ("reseed empty (default)", {"reseed_empty": True}),
               ("reseed empty from 0.5", {"reseed_empty": True, "reseed_from": 0.5}),
               ("logit_norm until 0.5", {"logit_norm": True, "logit_norm_until": 0.5})],
    # Trainer options (TrainConfig fields) rather than UCCC parameters: see TRAIN_OPTIONS.
    "self-label": [("default", {}), ("self-label from 0.6", {}), ("self-label from 0.8", {})],
}
#: Ablation labels that set trainer options (``TrainConfig`` fields) besides UCCC's parameters.
TRAIN_OPTIONS: dict[str, dict[str, Any]] = {
    "self-label from 0.6": {"self_label": 0.6},
    "self-label from 0.8": {"self_label": 0.8},
}


def cmd_ablation(args: argparse.Namespace) -> int:
    groups = [g for g in args.groups.split(",") if g]
    unknown = [g for g in groups if g not in ABLATION_GROUPS]
    if unknown:
        raise UserError(f"unknown ablation group(s) {unknown}; valid: {', '.join(ABLATION_GROUPS)}")
    from clustering.methods import get_method, resolve_params

    # Several data sets (e.g. 10, 20 and 40 classes): every configuration on each of them.
    datasets = [d for d in args.dataset.split(",") if d]
    loaded = {name: load_native(name, args.root) for name in datasets}
    configs: list[tuple[str, dict[str, Any]]] = []
    # Several groups contain the default configuration (tau 0.3 = k 2 = t 4): train it once.
    seen: set[tuple] = set()
    for group in groups:
        for label, params in ABLATION_GROUPS[group]:
            if args.configs and label not in args.configs.split(","):
                continue
            resolved = vars(resolve_params(get_method("uccc"), params))
            key = (tuple(sorted(resolved.items())), tuple(sorted(TRAIN_OPTIONS.get(label, {}).items())))
            if key in seen:
                continue
            seen.add(key)
            configs.append((label, params))
    jobs = [Job(name, "uccc", seed, label, params, TRAIN_OPTIONS.get(label, {})) for name in datasets
            for label, params in configs for seed in range(args.seeds)]  # fmt: skip
    rows = run_jobs(jobs, args, loaded.__getitem__, print_row)
    write_tables(rows, Path(args.results), args.name or "ablation")
    return 0
