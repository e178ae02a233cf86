"""Regenerate the demo run shipped in ``assets/demo_runs`` with the project's own CLI.

    python -m app.make_demo                 # UCCC on digits, 3 minutes, current defaults
    python -m app.make_demo --minutes 1     # quicker; extra flags go to `clustering train`

The run is trained by ``python -m clustering train`` exactly as a user would train it, then
slimmed so the repository stays small: ``checkpoints/best.pt`` is dropped (``last.pt`` is
enough to resume or re-embed; the studio copes with a missing best.pt) and the training log
is removed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "assets" / "demo_runs"
DEMO_ID = "demo-uccc-digits"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared cores)")
    # Relative to the repository so the shipped config.json names no machine-specific path.
    parser.add_argument(
        "--out", type=Path, default=DEMO_DIR.relative_to(REPO), help="folder for the demo run"
    )
    args, extra = parser.parse_known_args(argv)

    run_dir = REPO / args.out / DEMO_ID
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the CLI refuses to overwrite a run; regeneration replaces it
    cmd = [
        sys.executable,
        "-m",
        "clustering",
        "train",
        "--method",
        "uccc",
        "--dataset",
        "digits",
        "--minutes",
        str(args.minutes),
        "--threads",
        str(args.threads),
        "--run-id",
        DEMO_ID,
        "--out",
        str(args.out),
        "--no-progress",
        *extra,
    ]
    print("$", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=REPO, check=False)
    if result.returncode != 0:
        return result.returncode
    best = run_dir / "checkpoints" / "best.pt"
    best.unlink(missing_ok=True)
    size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    print(f"demo run: {run_dir} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
