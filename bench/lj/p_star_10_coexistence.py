"""LJ coexistence at P* = 10 (0.419 GPa in argon units; r_c = 2.5σ, shifted): box-size study.

    .venv/bin/python -m bench.lj.p_star_10_coexistence N_XY N_Z PRODUCTION_STEPS [SEED]

The solid is an fcc N_XY × N_XY × N_Z-cell supercell at 5.15 Å, doubled along z (half of it
melted); 5 temperatures ± 5 % around 161 K × 2 replicas, 10 fs steps, the other settings as
the P* = 10 fixture of tests/unit/free_energy/test_coexistence.py. Prints every box's
interface velocity and the result; one JSON line goes to ``p_star_10_coexistence.jsonl``.
"""

import json
import sys
import time

import numpy as np
import torch

from bench.common import ARGON_EPSILON_EV, ARGON_SIGMA_A, threads_from_env
from phasetune.free_energy.coexistence import melting_temperatures_coexistence
from phasetune.free_energy.two_phase_box import CoexistenceSettings
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.structures import build_structure
from phasetune.units import EV_PER_A3_PER_GPA

n_xy, n_z, production = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
torch.set_num_threads(threads_from_env())
cells = build_structure("fcc", element="Ar", lattice_A=5.15, n_atoms=4)  # one cubic cell
solid = cells.repeat((n_xy, n_xy, n_z))
pressure = 10.0 * ARGON_EPSILON_EV / ARGON_SIGMA_A**3 / EV_PER_A3_PER_GPA
model = LennardJones(
    epsilon_eV=ARGON_EPSILON_EV, sigma_A=ARGON_SIGMA_A, cutoff_sigma=2.5, shift=True
)
settings = CoexistenceSettings(
    timestep_fs=10.0,
    solid_steps=600,
    melt_steps=400,
    quench_steps=100,
    equilibration_steps=200,
    production_steps=production,
    stride=50,
    seed=seed,
    progress=False,
)
start = time.time()
(result,) = melting_temperatures_coexistence(
    model,
    solid,
    solid_phase="fcc",
    pressures_GPa=[pressure],
    guesses_K=[161.0],
    window=0.05,
    n_temperatures=5,
    n_replicas=2,
    settings=settings,
)
wall = time.time() - start
for t, r, v in zip(result.temperatures_K, result.replica, result.velocity_A_per_ps, strict=True):
    print(f"  {t:6.1f} K  replica {r}: {v:+.3f} Å/ps")
print(result.describe(), f"({wall:.0f} s)")
row = {
    "n_xy": n_xy,
    "n_z": n_z,
    "production_steps": production,
    "seed": seed,
    "n_atoms": result.n_atoms,
    "melting_temperature_K": result.melting_temperature_K,
    "error_K": result.error_K,
    "bracketed": result.bracketed,
    "replicas_disagree": result.replicas_disagree,
    "disagreement_K": result.disagreement_K,
    "temperatures_K": np.asarray(result.temperatures_K).tolist(),
    "velocity_A_per_ps": np.asarray(result.velocity_A_per_ps).round(4).tolist(),
    "wall_s": round(wall),
}
with open("p_star_10_coexistence.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
