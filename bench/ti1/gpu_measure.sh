#!/usr/bin/env bash
# Issue 20, items 6–7 on a lent GPU, as one prepared command (≤ 8 min of device time):
#   bash bench/gpu_check.sh --download          # here, once: the wheels into .whl/
#   run(command="bash bench/ti1/gpu_measure.sh", carry=[".whl"], timeout_s=590)
# Stages, each with its own time limit so that a slow one leaves the others' results:
#   1. Ti1 hcp|bcc by free energies, preset=converged (8 replicas × 36 ps switching)
#   2. Ti1 hcp|bcc by the melting of both solids, preset=quick
#   3. ti_small hcp|bcc by free energies, preset=quick, float32 (hcp 240 / bcc 250)
# Results: $OUT/<stage>/transitions.json and .csv, $OUT/<stage>.log, $OUT/wall.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-bench/out/gpu_measure}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 WANDB_MODE=disabled
MEASURE='from phasetune.commands import measure_main; measure_main()'
stage() {  # name, seconds, overrides...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" python3 -c "$MEASURE" device=cuda threads=8 plot=true \
    "hydra.run.dir=$OUT/$name" coexistence.progress=false free_energy.solid.progress=false \
    free_energy.enthalpy.progress=false "$@" >"$OUT/$name.log" 2>&1
  echo "$name rc=$? wall_s=$((SECONDS - start))" | tee -a "$OUT/wall.txt"
}
stage ti1_free_energy_converged 200 model=ti1_eam pair=hcp_bcc method=free_energy \
  preset=converged dtype=float64
stage ti1_melting_quick 170 model=ti1_eam pair=hcp_bcc method=melting preset=quick \
  dtype=float64
stage ti_small_free_energy_quick 100 model=ti_small pair=hcp_bcc method=free_energy \
  preset=quick dtype=float32
