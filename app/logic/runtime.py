"""Process-wide settings of the studio process.

The studio's own number crunching (graph statistics on a 2,048 sample, t-SNE/UMAP) is small,
and it shares a few cores with training runs. OpenMP and BLAS thread pools that spin-wait are
several times *slower* when the cores are oversubscribed (measured here: graph statistics
160 ms on one thread vs 960 ms on two while two trainings ran), so the studio computes on one
thread by default. ``CLUSTER_STUDIO_THREADS`` raises it on a machine with cores to spare.
Training runs are separate processes with their own ``--threads``.
"""

from __future__ import annotations

import os

ENV_VAR = "CLUSTER_STUDIO_THREADS"
_applied: int | None = None


def studio_threads() -> int:
    try:
        return max(1, int(os.environ.get(ENV_VAR, "1")))
    except ValueError:
        return 1


def limit_threads(n: int | None = None) -> int:
    """Cap torch's and the native (OpenMP/BLAS) thread pools of this process; idempotent."""
    global _applied
    n = n or studio_threads()
    if _applied == n:
        return n
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)
    _applied = n
    return n
