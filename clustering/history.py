"""``history.bin``: every evaluation's cluster and confidence per sample, compactly.

``predictions.npz`` holds only the latest evaluation; the story of a run (how clusters form,
split, merge and settle; UCCC paper Fig. 3) needs all of them. At 100,000 samples an evaluation
costs 400 kB here (uint16 cluster + float16 confidence), so 300 evaluations fit in 120 MB.

Layout (little-endian)::

    header   8 bytes  b"CSHIST01"
             8 bytes  int64 N (samples per record)
    record   8 bytes  int64 step
             8 bytes  int64 epoch
             2N bytes uint16 cluster
             2N bytes float16 confidence

Append-only with one ``write`` per record, so a reader sees whole records or a torn last one,
which it ignores (the file's size is not a whole number of records). A resume truncates the file
to the records at or before its checkpoint's step (:meth:`HistoryWriter.rewind`). Readers
memory-map the file: a page reads the two evaluations it shows, not the whole history.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clustering.faults import fault_point

HISTORY_FILE = "history.bin"
MAGIC = b"CSHIST01"
HEADER_BYTES = 16
#: Cluster ids are stored as uint16.
MAX_CLUSTERS = 65_535


def record_bytes(n: int) -> int:
    return 16 + 4 * n


def _record_dtype(n: int) -> np.dtype:
    return np.dtype([("step", "<i8"), ("epoch", "<i8"), ("cluster", "<u2", (n,)), ("confidence", "<f2", (n,))])


class HistoryWriter:
    """Appends one record per evaluation to ``<run_dir>/history.bin`` (rank 0 only)."""

    def __init__(self, run_dir: Path, n: int) -> None:
        self.path = Path(run_dir) / HISTORY_FILE
        self.n = int(n)
        self.enabled = True
        if self._header_n() != self.n:
            # New run, or a file of another data set size (a foreign or broken file): start over.
            with open(self.path, "wb") as fh:
                fh.write(MAGIC + np.int64(self.n).tobytes())

    def _header_n(self) -> int | None:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(HEADER_BYTES)
        except OSError:
            return None
        if len(head) < HEADER_BYTES or head[:8] != MAGIC:
            return None
        return int(np.frombuffer(head[8:], "<i8")[0])

    def append(self, step: int, epoch: int, cluster: np.ndarray, confidence: np.ndarray) -> None:
        if cluster.size and int(cluster.max()) > MAX_CLUSTERS:
            self.enabled = False  # more clusters than uint16 holds: no more records, not wrapped ids
        if not self.enabled:
            return
        if cluster.shape != (self.n,) or confidence.shape != (self.n,):
            raise ValueError(f"history record needs {self.n} samples, got {cluster.shape} and {confidence.shape}")
        record = np.zeros(1, dtype=_record_dtype(self.n))
        record["step"], record["epoch"] = step, epoch
        record["cluster"][0] = cluster.astype(np.uint16)
        record["confidence"][0] = confidence.astype(np.float16)
        self._drop_torn_tail()
        data = record.tobytes()
        with open(self.path, "ab") as fh:

            def tear() -> None:  # what a kill in the middle of the write leaves: part of a record
                fh.write(data[: len(data) // 2])
                fh.flush()

            fault_point("history", step, before_kill=tear)
            fh.write(data)
            fh.flush()

    def _drop_torn_tail(self) -> None:
        """A kill inside an append leaves part of a record; the next one must start on a boundary."""
        size = self.path.stat().st_size
        whole = HEADER_BYTES + (size - HEADER_BYTES) // record_bytes(self.n) * record_bytes(self.n)
        if whole != size:
            os.truncate(self.path, whole)

    def rewind(self, step: int) -> int:
        """Keep the records at or before ``step`` (a resume from that checkpoint); returns records dropped."""
        if not self.enabled or not self.path.exists():
            return 0
        self._drop_torn_tail()
        history = read_history(self.path.parent)
        if history is None:
            return 0
        keep = int(np.searchsorted(history.steps, step, side="right")) if history.monotonic else len(history)
        dropped = len(history) - keep
        del history  # release the map before truncating under it
        if dropped:
            os.truncate(self.path, HEADER_BYTES + keep * record_bytes(self.n))
        return dropped


@dataclass
class RunHistory:
    """Read-only view of ``history.bin``: E evaluations of N samples."""

    steps: np.ndarray  # (E,) int64
    epochs: np.ndarray  # (E,) int64
    cluster: np.ndarray  # (E, N) uint16, memory-mapped
    confidence: np.ndarray  # (E, N) float16, memory-mapped

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.cluster.shape[1])

    @property
    def monotonic(self) -> bool:
        return bool(np.all(np.diff(self.steps) > 0))


def read_history(run_dir: Path) -> RunHistory | None:
    """The run's history, or None when it has none (an older run) or the file is not one."""
    path = Path(run_dir) / HISTORY_FILE
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(HEADER_BYTES)
    except OSError:
        return None
    if len(head) < HEADER_BYTES or head[:8] != MAGIC:
        return None
    n = int(np.frombuffer(head[8:], "<i8")[0])
    if n <= 0:
        return None
    count = (size - HEADER_BYTES) // record_bytes(n)  # a torn last record is not counted
    if count <= 0:
        return None
    records = np.memmap(path, dtype=_record_dtype(n), mode="r", offset=HEADER_BYTES, shape=(count,))
    return RunHistory(
        steps=np.array(records["step"]),  # copies: small, and independent of the map
        epochs=np.array(records["epoch"]),
        cluster=records["cluster"],
        confidence=records["confidence"],
    )
