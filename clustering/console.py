"""What a training run prints: the data-derived defaults, and one line per evaluation."""

from __future__ import annotations

import math
import sys
from typing import Any

from clustering.config import TrainConfig


def announce_data_defaults(config: TrainConfig) -> None:
    """Print the defaults chosen from the data, and why (one line each, on stderr)."""
    for name, choice in config.data_defaults.items():
        print(f"default {name} = {choice['value']}: {choice['reason']}", file=sys.stderr, flush=True)


def fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def log_epoch(row: dict[str, Any], show: bool) -> None:
    keys = ("loss", "acc", "nmi", "ari", "jsd", "confidence", "n_nonempty", "final_reseeds", "restarts_won",
            "split_merge_moves", "largest_over_mean_at_end", "umap_gmm_kept", "refit_moved",
            "acc_as_trained")  # fmt: skip
    # The end-of-run re-seeding's count, the k-means restarts, the split-and-merge moves, UMAP + GMM
    # (and what "if_uneven" saw of the head) and the head refit's figures are in the last row only.
    counts = ("n_nonempty", "final_reseeds", "restarts_won", "split_merge_moves")
    text = " ".join(f"{k}={fmt(row.get(k)) if k not in counts else int(row[k])}" for k in keys if k in row)
    print(f"epoch {row['epoch']:>4} step {row['step']:>6} {text}", flush=True, file=sys.stderr if show else sys.stdout)
