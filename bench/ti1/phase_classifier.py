"""Per-atom phase classification of bulk Ti1 bcc (1918 K), liquid (1918, 1800 K), hcp (1700 K).

.venv/bin/python -m bench.ti1.phase_classifier
"""

import time

import numpy as np
import torch

from phasetune.potentials.eam import mendelev_ti1
from phasetune.sampling.local_order import local_order
from phasetune.sampling.phase_check import phase_fractions
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.structures import build_structure

torch.set_num_threads(2)
m = mendelev_ti1(dtype=torch.float64)
bcc = build_structure("bcc", element="Ti", lattice_A=3.31, n_atoms=250)
liq = build_structure("liquid", element="Ti", lattice_A=4.20, n_atoms=250)
hcp = build_structure("hcp", element="Ti", lattice_A=2.95, n_atoms=256, c_over_a=1.59)
pts = [
    StatePoint(name="bcc", phase="bcc", atoms=bcc, temperature_K=1918.0, pressure_GPa=0.0),
    StatePoint(name="liq", phase="liquid", atoms=liq, temperature_K=1918.0, pressure_GPa=0.0),
    StatePoint(name="liq2", phase="liquid", atoms=liq, temperature_K=1800.0, pressure_GPa=0.0),
    StatePoint(name="hcp", phase="hcp", atoms=hcp, temperature_K=1700.0, pressure_GPa=0.0),
]
t = time.time()
fr, _ = sample_state_points(
    m,
    pts,
    SamplerSettings(
        timestep_fs=2.0,
        equilibration_steps=1500,
        melt_steps=500,
        production_steps=1500,
        stride=100,
        compressibility_per_GPa=0.02,
        check_phase=False,
        progress=False,
    ),
)
print("wall", time.time() - t, "steps 3000 atoms", sum(len(p.atoms) for p in pts))
for f in range(fr.n_frames):
    pf = phase_fractions(fr.positions[f], fr.cell[f], fr.system_idx)
    print(
        f,
        np.round(pf.numpy(), 2).tolist(),
        "V/N",
        (torch.linalg.det(fr.cell[f]) / torch.bincount(fr.system_idx)).numpy().round(2),
        "P",
        fr.pressure[f].numpy().round(2),
        "T",
        fr.temperature[f].numpy().round(0),
    )
lo = local_order(fr.positions[-1], fr.cell[-1], fr.system_idx)
for s in range(4):
    sel = fr.system_idx == s
    print(
        s,
        "q6bar pct",
        np.percentile(lo.q6_bar[sel].numpy(), [1, 50, 99]).round(3),
        "xi>=4 frac",
        (lo.solid_bonds[sel] >= 4).float().mean().item(),
    )
