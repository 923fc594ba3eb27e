#!/usr/bin/env bash
# Create .venv with a Python >= 3.12 and install phasetune (editable) with its dev extras.
# Idempotent: a second run only re-installs when pyproject.toml or requirements.lock changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python() {
  local candidate
  for candidate in "${PHASETUNE_PYTHON:-}" python3.13 python3.12 python3 python; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      command -v "$candidate"; return 0
    fi
  done
  # pyenv keeps versions that its shims may not expose
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  command -v pyenv >/dev/null 2>&1 && root="$(pyenv root)"
  for candidate in "$root"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    if [ -x "$candidate" ] && python_ok "$candidate"; then echo "$candidate"; return 0; fi
  done
  return 1
}

if [ ! -x .venv/bin/python ] || ! python_ok .venv/bin/python; then
  PY="$(find_python)" || {
    echo "phasetune needs Python >= 3.12; none found. Install one (e.g. 'pyenv install 3.12')" \
         "or point PHASETUNE_PYTHON at it." >&2
    exit 1
  }
  echo "[setup] creating .venv with $PY ($("$PY" --version))"
  rm -rf .venv
  "$PY" -m venv .venv
fi

stamp=.venv/.phasetune-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  echo "[setup] installing phasetune and its dependencies (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # runtime dependencies at the versions the tests passed with (scripts/lock.py)
  .venv/bin/python -m pip install --quiet -c requirements.lock -e ".[dev]"
  touch "$stamp"
fi
