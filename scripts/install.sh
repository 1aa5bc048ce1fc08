#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install LFP Explorer with pinned dependencies.
# torch goes first and pinned: the CPU wheel satisfies torch==2.13.0, and everything installed
# after it finds the pin already met instead of pulling a CUDA build (gigabytes).
# Usage: bash scripts/install.sh [--test]   (--test adds the test tools, and Debian's Chromium for the
# browser tests when it is missing: apt-get, as root or through sudo)
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
  if [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
    if command -v apt-get >/dev/null 2>&1 \
        && $SUDO apt-get update -qq \
        && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
      echo "installed chromium for the browser tests"
    else
      echo "warning: could not install chromium (apt-get install -y chromium); the browser tests will be skipped" >&2
    fi
  fi
else
  "$VENV_PY" -m pip install --quiet --no-deps -e .
fi
echo "installed into $(pwd)/.venv"
