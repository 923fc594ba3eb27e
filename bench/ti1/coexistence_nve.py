"""Ti1 bcc|liquid boxes in NVE after melting half: where does each settle (T, P, x_s)?

    .venv/bin/python -m bench.ti1.coexistence_nve NX NZ T1,T2 STEPS   # e.g. 5 5 1850,2000 5000

bcc NX×NX×NZ cubic cells at 18.75 Å³/atom, doubled along z; the upper half melted at
2T, 500 NPT steps at T_i, then NVE (2 fs); prints time, solid fraction, T, P, P_zz.
"""

import sys
import time

import torch
import torch_sim as ts
from ase.build import bulk

from phasetune.free_energy.two_phase_box import (
    CoexistenceSettings,
    elongated_solid,
    melt_upper_half,
)
from phasetune.potentials.eam import mendelev_ti1
from phasetune.sampling.phase_check import phase_fractions
from phasetune.sampling.sampler import StatePoint, sample_state_points
from phasetune.units import EV_PER_A3_PER_GPA, KB_EV_PER_K, fs_to_internal

torch.set_num_threads(2)
m = mendelev_ti1(dtype=torch.float64)
nx = int(sys.argv[1])
nz = int(sys.argv[2])
bcc = bulk("Ti", "bcc", a=(2 * 18.75) ** (1 / 3), cubic=True).repeat((nx, nx, nz))
s = CoexistenceSettings(
    timestep_fs=2.0,
    melt_steps=1000,
    melt_temperature_factor=2.0,
    quench_steps=100,
    progress=False,
    compressibility_per_GPa=0.02,
)
box = elongated_solid(bcc, 2)
temps = [float(t) for t in sys.argv[3].split(",")]
t0 = time.time()
boxes = melt_upper_half(
    m,
    [box] * len(temps),
    temperatures_K=temps,
    pressures_GPa=[0] * len(temps),
    settings=s,
    device=torch.device("cpu"),
    dtype=torch.float64,
)
pts = [
    StatePoint(
        name=f"c{i}",
        phase="bcc",
        atoms=b,
        temperature_K=t,
        pressure_GPa=0.0,
        cell_mode="anisotropic",
    )
    for i, (b, t) in enumerate(zip(boxes, temps, strict=True))
]
fr, md = sample_state_points(
    m,
    pts,
    s.sampler_settings(
        equilibration_steps=0, production_steps=500, stride=100, seed=1, check_phase=False
    ),
)
print("npt wall", time.time() - t0, "atoms/box", len(boxes[0]))
state = md
nve = ts.integrators.nve_init(state, m, kT=torch.tensor(KB_EV_PER_K * 1900.0))
nve.momenta = md.momenta.clone()
dt = fs_to_internal(2.0)
n = len(temps)
counts = torch.bincount(nve.system_idx).double()
for step in range(int(sys.argv[4]) + 1):
    if step % 250 == 0:
        pf = phase_fractions(nve.positions, nve.row_vector_cell, nve.system_idx).numpy()
        ke = torch.zeros(n, dtype=torch.float64).index_add(
            0, nve.system_idx, (nve.momenta**2 / (2 * nve.masses[:, None])).sum(-1)
        )
        T = (2 * ke / (3 * (counts - 1) * KB_EV_PER_K)).numpy()
        out = m(nve)
        vol = torch.linalg.det(nve.row_vector_cell)
        P = (
            (2 * ke / (3 * vol)) - torch.diagonal(out["stress"], dim1=-2, dim2=-1).mean(-1)
        ).numpy() / EV_PER_A3_PER_GPA
        Pzz = ((2 * ke / (3 * vol)) - out["stress"][:, 2, 2]).numpy() / EV_PER_A3_PER_GPA
        print(
            step * 2 / 1000,
            "ps solid",
            (1 - pf[:, 3]).round(3),
            "T",
            T.round(0),
            "P",
            P.round(2),
            "Pzz",
            Pzz.round(2),
            flush=True,
        )
    nve = ts.integrators.nve_step(nve, m, dt=dt)
print("wall", time.time() - t0)
