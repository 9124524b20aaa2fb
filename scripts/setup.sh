#!/usr/bin/env bash
# Create .venv and install imaudit with the exact versions in requirements.lock (idempotent).
# The lock holds every dependency, dev tools included (scripts/lock.sh makes it from pyproject.toml),
# so it is installed without resolving (--no-deps) and `pip check` proves nothing is missing.
# pip, not uv, installs it: torch==2.14.1 / torchvision==0.29.1 come from the local wheel indexes
# that pip is configured with on the build machines (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q --no-deps -r requirements.lock
.venv/bin/pip install -q --no-deps --no-build-isolation -e .
.venv/bin/pip check
