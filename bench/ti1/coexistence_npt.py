"""Ti1 bcc|liquid coexistence (NPT bracketing) with a chosen box: 2 temperatures × 2 replicas.

.venv/bin/python -m bench.ti1.coexistence_npt NX NZ GUESS WINDOW PRODUCTION_STEPS
# e.g. 5 12 1918 0.03 4000: bcc 5×5×12 cells doubled = 1,200 atoms per box
"""

import logging
import sys
import time

import numpy as np
import torch
from ase.build import bulk

from phasetune.free_energy.coexistence import CoexistenceSettings, melting_temperatures_coexistence
from phasetune.potentials.eam import mendelev_ti1

logging.basicConfig(level=logging.INFO)
torch.set_num_threads(2)
m = mendelev_ti1(dtype=torch.float64)
nx, nz = int(sys.argv[1]), int(sys.argv[2])
solid = bulk("Ti", "bcc", a=(2 * 18.75) ** (1 / 3), cubic=True).repeat((nx, nx, nz))
s = CoexistenceSettings(
    timestep_fs=2.0,
    solid_steps=1000,
    melt_steps=1000,
    melt_temperature_factor=2.0,
    equilibration_steps=500,
    production_steps=int(sys.argv[5]),
    stride=100,
    compressibility_per_GPa=0.02,
    progress=False,
)
t0 = time.time()
res = melting_temperatures_coexistence(
    m,
    solid,
    solid_phase="bcc",
    pressures_GPa=[0.0],
    guesses_K=[float(sys.argv[3])],
    window=float(sys.argv[4]),
    n_temperatures=2,
    n_replicas=2,
    settings=s,
)
r = res[0]
print("wall", time.time() - t0, r.describe())
print(
    "T",
    r.temperatures_K,
    "v",
    r.velocity_A_per_ps.round(3),
    "Tmean",
    r.mean_temperature_K.round(0),
    "P",
    r.mean_pressure_GPa.round(2),
)
np.set_printoptions(linewidth=200)
print(r.solid_fraction[::2].round(2))
