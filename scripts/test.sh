#!/usr/bin/env bash
# Set up (if needed) and run the test suite on the CPU.
# CI (CI=true) and PHASETUNE_SLOW=1 also run the `slow` physics validations (the whole suite
# then takes ≈ 42 min on 2 cores: 2,519 s on 2026-12-02); extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_MODE=disabled OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
markers=()
if [ "${CI:-}" != "true" ] && [ "${PHASETUNE_SLOW:-0}" != "1" ]; then
  echo "[test] slow physics validations skipped (PHASETUNE_SLOW=1 runs them; CI does)"
  markers=(-m "not slow")
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${markers[@]}" "$@"
