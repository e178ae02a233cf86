"""Benchmarks that print their figures: ``python -m clustering bench quality|ablation|speed ...``.

Modules: ``cli`` (the ``bench`` parser), ``runner`` (data sets, jobs, worker processes),
``tables`` (rows, markdown, CSV), ``baselines`` (raw pixels), ``quality`` (quality, ablation),
``speed`` (speed, distributed), ``experiments`` (lnscc-ceiling, degeneracy) and
``lnscc_ceiling`` (the research code behind ``bench lnscc-ceiling``, imported only when it runs).
"""

from clustering.bench.baselines import baseline_rows, raw_features
from clustering.bench.cli import add_bench_parser
from clustering.bench.experiments import (
    DEGENERACY_KEYS,
    DEGENERACY_VARIANTS,
    cmd_degeneracy,
    cmd_lnscc_ceiling,
    degeneracy_table,
)
from clustering.bench.quality import ABLATION_GROUPS, cmd_ablation, cmd_quality
from clustering.bench.runner import DataRef, Job, data_refs, load_native, run_job, run_jobs, usable_cores
from clustering.bench.speed import cmd_distributed, cmd_speed
from clustering.bench.tables import (
    TABLE_COLUMNS,
    fmt,
    markdown,
    print_row,
    save_table,
    summarize,
    write_tables,
)

__all__ = [
    "ABLATION_GROUPS",
    "DEGENERACY_KEYS",
    "DEGENERACY_VARIANTS",
    "TABLE_COLUMNS",
    "DataRef",
    "Job",
    "add_bench_parser",
    "baseline_rows",
    "cmd_ablation",
    "cmd_degeneracy",
    "cmd_distributed",
    "cmd_lnscc_ceiling",
    "cmd_quality",
    "cmd_speed",
    "data_refs",
    "degeneracy_table",
    "fmt",
    "load_native",
    "markdown",
    "print_row",
    "raw_features",
    "run_job",
    "run_jobs",
    "save_table",
    "summarize",
    "usable_cores",
    "write_tables",
]
