#!/usr/bin/env bash
# Run a command inside Lookout's environment (venv + ros2_ws + defaults): scripts/run.sh pytest -x
set -eo pipefail
. "$(dirname "$0")/env.sh"
exec "$@"
