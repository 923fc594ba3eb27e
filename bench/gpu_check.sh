#!/usr/bin/env bash
# The GPU check, as one command for the device machine (its image has torch, e3nn, Lightning,
# numpy, scipy, h5py, matplotlib, pandas, but not mace, torch-sim, hydra, ase, vesin, tables):
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=590)
# .whl holds those wheels (no dependencies, ≈ 21 MB), made here once with
#   bash bench/gpu_check.sh --download
# Results: $OUT/gpu_check.json, $OUT/gpu_check.md, $OUT/pipeline.log (see bench/gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  mace-torch==0.3.16 torch-sim-atomistic==0.6.2 vesin==0.6.2 hydra-core==1.3.8 omegaconf==2.3.1
  ase==3.29.0 matscipy==1.3.1 e3nn==0.4.4 tables==3.11.1 numexpr==2.14.2 blosc2==4.14.1
  ndindex==1.10.1 torch-ema==0.3 configargparse==1.9.0 GitPython==3.2.1 gitdb==4.0.12
  smmap==5.0.3 lmdb==3.0.0 orjson==3.13.0 prettytable==3.18.0 wcwidth==0.9.4
  cuequivariance==0.13.0 cuequivariance-torch==0.13.0
)
if [ "${1:-}" = "--download" ]; then
  mkdir -p .whl
  for p in "${WHEELS[@]}"; do
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$p"
  done
  # antlr4 (hydra's parser) is a source distribution only: build its wheel
  .venv/bin/python -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
  du -sh .whl
  exit 0
fi
OUT="${OUT:-bench/out/gpu_check}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/nvidia-smi.txt" || true
exec python3 -m bench.gpu_check --out "$OUT" "$@"
