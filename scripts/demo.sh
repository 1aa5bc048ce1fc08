#!/usr/bin/env bash
# The main job on a fresh machine: install, then run every stage of the offline `tiny` world
# (synthetic movie reviews, a GPT-NeoX pretrained here, RL-tuned on the VADER reward) into
# runs/tiny. Re-running resumes: finished stages are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/lfp run --preset tiny --out runs/tiny
.venv/bin/lfp status runs/tiny
