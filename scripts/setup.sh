#!/usr/bin/env bash
# Create .venv and install imaudit with the exact versions in requirements.lock (idempotent).
# The lock holds every dependency, dev tools included (scripts/lock.sh makes it from pyproject.toml),
# so it is installed without resolving (--no-deps) and `pip check` proves nothing is missing.
# pip, not uv, installs it: torch==2.14.1 / torchvision==0.29.1 come from the local wheel indexes
# that pip is configured with on the build machines (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
# pip's output without the one warning per package that an extra local index configured on the machine
# lacks ("Location 'file:///...' is ignored"): noise that hid real messages. pip's exit status is kept.
pip_quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory" || true; }; }
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  pip_quiet .venv/bin/pip install -q --upgrade pip
fi
pip_quiet .venv/bin/pip install -q --no-deps -r requirements.lock
pip_quiet .venv/bin/pip install -q --no-deps --no-build-isolation -e .
.venv/bin/pip check
