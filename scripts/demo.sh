#!/usr/bin/env bash
# The main job on a fresh machine: install, run every stage of the offline `tiny` world
# (synthetic movie reviews, a GPT-NeoX pretrained here, RL-tuned on the VADER reward) into
# runs/tiny, then open the dashboard on it (http://localhost:8501; Ctrl+C stops it).
# Re-running resumes: finished stages are skipped. PORT=8502 bash scripts/demo.sh picks another port.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/lfp run --preset tiny --out runs/tiny
.venv/bin/lfp status runs/tiny
exec .venv/bin/lfp app runs/tiny --port "${PORT:-8501}"
