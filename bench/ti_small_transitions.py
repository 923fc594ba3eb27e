"""Transition temperatures of a titanium model at 0 GPa, both pairs, with bench-sized settings.

    .venv/bin/python -m bench.ti_small_transitions [out_dir] [model.path=FILE ...]

bcc|liquid by two-phase coexistence (bcc 4×4×4 cells doubled along z = 256 atoms per box,
5 temperatures × 2 replicas) and hcp|bcc by free energies (Frenkel–Ladd of hcp 96 and bcc 128
atoms, 4 replicas each, then Gibbs–Helmholtz from NPT enthalpies at 0.9, 1.0, 1.1 × the guess).
The default model is the shipped ``ti_small``; the results are the T* that
``phasetune/conf/targets/ti_small.yaml`` gives for it (``model_transition_K``). Extra arguments are
Hydra overrides of ``phasetune/conf/measure.yaml``, e.g. ``model.path=outputs/train/<run>/...``, or
``bcc_liquid.guess=T`` / ``hcp_bcc.guess=T`` (K) to centre a measurement.
"""

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from phasetune.configs import CONFIG_DIR
from phasetune.measure import measure

COMMON = ["model=ti_small", "dtype=float32", "threads=2", "pressures=[0.0]"]
MELTING = [
    "pair=bcc_liquid",
    "method=coexistence",
    "n_temperatures=5",
    "n_replicas=2",
    "window=0.05",
    "pair.structures.bcc.lattice_A=3.28",
    "pair.structures.bcc.n_atoms=128",
    "coexistence.timestep_fs=4.0",
    "coexistence.solid_steps=500",
    "coexistence.melt_steps=500",
    "coexistence.melt_temperature_factor=1.5",
    "coexistence.equilibration_steps=250",
    "coexistence.production_steps=2500",
    "coexistence.compressibility_per_GPa=0.02",
]
ALPHA_BETA = [
    "pair=hcp_bcc",
    "method=free_energy",
    "pair.structures.hcp.n_atoms=96",
    "pair.structures.hcp.c_over_a=1.6",
    "pair.structures.bcc.lattice_A=3.28",
    "pair.structures.bcc.n_atoms=128",
    "free_energy.solid.timestep_fs=4.0",
    "free_energy.solid.npt_equilibration_steps=500",
    "free_energy.solid.npt_production_steps=1000",
    "free_energy.solid.switching_equilibration_steps=250",
    "free_energy.solid.switching_steps=1500",
    "free_energy.solid.compressibility_per_GPa=0.02",
    "free_energy.enthalpy.timestep_fs=4.0",
    "free_energy.enthalpy.compressibility_per_GPa=0.02",
]

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/bench_ti_small_transitions")
    extra = sys.argv[2:]
    guesses = {"bcc_liquid": "guesses_K=[2080.0]", "hcp_bcc": "guesses_K=[1300.0]"}
    for arg in list(extra):  # bcc_liquid.guess=T / hcp_bcc.guess=T
        name, _, value = arg.partition(".guess=")
        if value:
            guesses[name] = f"guesses_K=[{float(value)}]"
            extra.remove(arg)
    results = {}
    for name, overrides in (("hcp_bcc", ALPHA_BETA), ("bcc_liquid", MELTING)):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(
                config_name="measure", overrides=[*COMMON, *overrides, guesses[name], *extra]
            )
        start = time.perf_counter()
        rows = measure(cfg, out / name)
        wall = time.perf_counter() - start
        for row in rows:
            t = row.get("transition_temperature_K", row.get("melting_temperature_K"))
            print(f"{name} ({row['method']}): T* = {t:.1f} ± {row['error_K']:.1f} K, {wall:.0f} s")
            results[name] = {"T_K": t, "error_K": row["error_K"], "wall_s": round(wall)}
    (out / "summary.json").write_text(json.dumps(results, indent=2))
