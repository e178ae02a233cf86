"""Regenerate the demo runs shipped in ``assets/demo_runs`` with the project's own CLI.

    python -m app.make_demo                 # UCCC (3 minutes) and SACC (1.5 minutes) on digits
    python -m app.make_demo --only uccc     # one of them; extra flags go to `clustering train`

Each run is trained by ``python -m clustering train`` exactly as a user would train it (so it
carries its history of evaluations and its own t-SNE and UMAP maps), then slimmed so the
repository stays small: ``checkpoints/best.pt`` is dropped (``last.pt`` is enough to resume or
re-embed; the studio copes with a missing best.pt). Two runs of one data set make the Compare runs
page work on a first start.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "assets" / "demo_runs"
#: demo id -> (method, minutes of training)
DEMOS = {"demo-uccc-digits": ("uccc", 3.0), "demo-sacc-digits": ("sacc", 1.5)}
DEMO_ID = "demo-uccc-digits"


def make_demo(run_id: str, method: str, minutes: float, threads: int, out: Path, extra: list[str]) -> int:
    run_dir = REPO / out / run_id
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the CLI refuses to overwrite a run; regeneration replaces it
    cmd = [sys.executable, "-m", "clustering", "train", "--method", method, "--dataset", "digits",
           "--minutes", str(minutes), "--threads", str(threads), "--run-id", run_id, "--out", str(out),
           "--no-progress", *extra]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=REPO, check=False)
    if result.returncode != 0:
        return result.returncode
    (run_dir / "checkpoints" / "best.pt").unlink(missing_ok=True)
    size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    print(f"demo run: {run_dir} ({size / 1e6:.1f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted({m for m, _ in DEMOS.values()}), help="regenerate one demo")
    parser.add_argument("--minutes", type=float, help="training budget of each (default: 3 for UCCC, 1.5 for SACC)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared cores)")
    # Relative to the repository so the shipped config.json names no machine-specific path.
    parser.add_argument("--out", type=Path, default=DEMO_DIR.relative_to(REPO), help="folder for the demo runs")
    args, extra = parser.parse_known_args(argv)
    for run_id, (method, minutes) in DEMOS.items():
        if args.only and method != args.only:
            continue
        code = make_demo(run_id, method, args.minutes or minutes, args.threads, args.out, extra)
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
