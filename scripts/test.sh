#!/usr/bin/env bash
# Set up (if needed) and run the test suite on the CPU.
# CI (CI=true) and PHASETUNE_SLOW=1 also run the `slow` physics validations, last. CI gives the
# whole pytest run a budget of PHASETUNE_TEST_BUDGET_S (default 4700 s of CI's 90 min,
# leaving the setup and the last test's overrun room): a slow validation that
# would overrun it is skipped with the reason (tests/slow_budget.py). Extra arguments go to pytest.
# Tests run in PHASETUNE_TEST_WORKERS (default 2) pytest-xdist processes of one thread each:
# on two cores that does 1.3-1.7x the work of one two-thread process (bench/RESULTS.md).
# PHASETUNE_TEST_WORKERS=1 runs one process on OMP_NUM_THREADS (default 2) threads.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_MODE=disabled
workers="${PHASETUNE_TEST_WORKERS:-2}"
parallel=()
if [ "$workers" -gt 1 ]; then
  export OMP_NUM_THREADS=1 PHASETUNE_THREADS=1
  parallel=(-n "$workers" --dist loadgroup --no-loadscope-reorder)
else
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
fi
markers=()
if [ "${CI:-}" != "true" ] && [ "${PHASETUNE_SLOW:-0}" != "1" ]; then
  echo "[test] slow physics validations skipped (PHASETUNE_SLOW=1 runs them; CI does)"
  markers=(-m "not slow")
elif [ "${CI:-}" = "true" ]; then
  export PHASETUNE_TEST_BUDGET_S="${PHASETUNE_TEST_BUDGET_S:-4700}"
  echo "[test] slow physics validations run while they fit ${PHASETUNE_TEST_BUDGET_S} s"
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${parallel[@]}" "${markers[@]}" "$@"
