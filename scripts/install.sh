#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install LFP Explorer with pinned dependencies.
# torch goes first and pinned: the CPU wheel satisfies torch==2.13.0, and everything installed
# after it finds the pin already met instead of pulling a CUDA build (gigabytes).
# Usage: bash scripts/install.sh [--test]   (--test adds the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VENV_PY=.venv/bin/python
"$VENV_PY" -m pip install --quiet --upgrade pip
"$VENV_PY" -m pip install --quiet "torch==2.13.0"
"$VENV_PY" -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--test" ]; then
  "$VENV_PY" -m pip install --quiet -r requirements-test.txt
  "$VENV_PY" -m pip install --quiet --no-deps -e ".[test]"
else
  "$VENV_PY" -m pip install --quiet --no-deps -e .
fi
echo "installed into $(pwd)/.venv"
