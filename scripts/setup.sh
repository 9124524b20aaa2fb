#!/usr/bin/env bash
# Create .venv and install imaudit with its dev extras (idempotent).
# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q -e '.[dev]'
