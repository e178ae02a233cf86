"""Fault injection for ``bench faults``: kill this process at a chosen point of a run.

``CLUSTER_STUDIO_FAULT=<point>:<n>`` in the environment makes the ``n``-th pass through
``fault_point(<point>)`` print one line and send SIGKILL to its own process, so a benchmark can
kill a run exactly during a step, a checkpoint write, a predictions write, a metrics append or an
evaluation, which a timer from outside hits only by luck. Without the variable a fault point costs
one dictionary lookup. The points:

    step         after the backward pass, before the optimiser step
    evaluation   after embedding the data set, before the metrics are written
    metrics      halfway through writing a metrics.jsonl line (a torn line is left)
    predictions  predictions.npz written to its temporary file, before the rename
    checkpoint   a checkpoint written to its temporary file, before the rename
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

ENV = "CLUSTER_STUDIO_FAULT"
#: Under torchrun: only the process of this RANK fires (unset: every process).
RANK_ENV = "CLUSTER_STUDIO_FAULT_RANK"
POINTS = ("step", "evaluation", "metrics", "predictions", "history", "checkpoint")

_passes: dict[str, int] = {}


def planned() -> tuple[str, int] | None:
    """The (point, n) the environment asks for, or None."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    point, _, count = spec.partition(":")
    if point not in POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{ENV}={spec!r}: expected <point>:<n> with point one of {', '.join(POINTS)} and n >= 1")
    return point, int(count)


def fault_point(point: str, step: int | None = None, before_kill: Callable[[], None] | None = None) -> None:
    """Kill this process here if this is the planned pass (see the module docstring);
    ``before_kill`` leaves what an interrupted write would (half a metrics line)."""
    plan = planned()
    if plan is None or plan[0] != point:
        return
    only = os.environ.get(RANK_ENV)
    if only is not None and os.environ.get("RANK", "0") != only:
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] == plan[1]:
        if before_kill is not None:
            before_kill()
        print(f"fault: SIGKILL at {point} #{plan[1]} (step {step}) at {time.time():.3f}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
