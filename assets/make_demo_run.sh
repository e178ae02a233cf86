#!/usr/bin/env bash
# Regenerate assets/demo_runs/demo-uccc-digits with the project's CLI (see app/make_demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m app.make_demo "$@"
