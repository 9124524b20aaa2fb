#!/usr/bin/env bash
# Set up, install Debian's chromium for the browser test if missing, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
export PREFECT_SERVER_ANALYTICS_ENABLED=false
exec .venv/bin/pytest -n 2 --dist loadfile -q "$@"
