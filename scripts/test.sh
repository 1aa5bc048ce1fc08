#!/usr/bin/env bash
# Install with the test tools and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/python -m pytest -q
