#!/usr/bin/env bash
# Set up, then train + release + audit the demo model; prints where report.html is.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false
exec .venv/bin/imaudit demo "$@"
