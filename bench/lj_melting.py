"""LJ (r_c = 2.5σ, truncated and shifted) melting temperature at P = 0, both routes.

    .venv/bin/python -m bench.lj_melting [out_dir]

Runs ``phasetune-measure method=both`` on argon-like LJ with bench-sized settings:
coexistence (fcc 4×4×4 cells doubled along z = 512 atoms per box, 5 temperatures × 2
replicas) and the free-energy route (Frenkel–Ladd 256 atoms, liquid TI 256 atoms,
Gibbs–Helmholtz from three NPT enthalpies). Reference: T_m* = 0.617 at the triple point
(Davidchack & Laird, J. Chem. Phys. 118, 7651 (2003)) = 73.9 K for ε/k_B = 119.8 K.
"""

import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from phasetune.configs import CONFIG_DIR
from phasetune.measure import measure

OVERRIDES = [
    "method=both",
    "n_temperatures=5",
    "n_replicas=2",
    "window=0.08",
    "coexistence.production_steps=3000",
    "coexistence.solid_steps=600",
    "coexistence.melt_steps=400",
    "free_energy.solid.switching_steps=2000",
    "free_energy.liquid.production_steps=2000",
    "free_energy.enthalpy.production_steps=2000",
    "threads=2",
]

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/bench_lj_melting")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=OVERRIDES)
    start = time.perf_counter()
    rows = measure(cfg, out)
    print(f"wall time {time.perf_counter() - start:.0f} s")
    for row in rows:
        t = row.get("transition_temperature_K", row.get("melting_temperature_K"))
        print(f"{row['method']}: T_m = {t:.2f} ± {row['error_K']:.2f} K = {t / 119.8:.4f} ε/k_B")
