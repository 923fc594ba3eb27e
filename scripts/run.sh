#!/usr/bin/env bash
# Set up (if needed) and run the main job on its embedded default; extra args are Hydra overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/phasetune "$@"
