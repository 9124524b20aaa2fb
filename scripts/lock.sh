#!/usr/bin/env bash
# Regenerate requirements.lock: the exact versions of imaudit's dependencies (dev extras included)
# that scripts/setup.sh installs and CI tests. uv keeps every pin already in the file that still
# fits pyproject.toml, so adding a dependency moves nothing else; `--upgrade-package NAME` moves one.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
exec "$UV" pip compile pyproject.toml --extra dev \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command ./scripts/lock.sh --quiet -o requirements.lock "$@"
