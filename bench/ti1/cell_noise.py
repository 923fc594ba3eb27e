"""Frenkel–Ladd in a noisy average cell: the upward bias of G/N, predicted and measured (Ti1).

    .venv/bin/python -m bench.ti1.cell_noise PHASE N_ATOMS SWITCHING_PS REPLICAS

Frenkel–Ladd gives F at a fixed cell, the average cell of an NPT run, and G = F + PV. G(h) is
smallest at the equilibrium cell h₀; a cell off by the strain δε costs the elastic energy

    ΔG = ½ V δεᵀ C δε = ½ k_BT δεᵀ Σ⁻¹ δε   (per crystal),

C from the strain fluctuations of a long NPT run (Σ = cov(ε), C = k_BT Σ⁻¹ / V, exact in the
elastic approximation). The mean cell of a run of n_eff independent cells is off by
δε ~ N(0, Σ/n_eff), so on average ΔG = (m/2) k_BT / n_eff for m cell modes (hcp: 3 diagonal
strains, anisotropic barostat; cubic: 1, isotropic).

This script runs a long NPT run (1,000 + 16,000 steps of 3 fs) for h₀, Σ, the sites and the
spring; three short ones as ``preset=quick``'s Frenkel–Ladd does (500 + 1,000 steps, seeds 0–2)
and predicts ΔG for each; then switches REPLICAS copies in h₀ and in the short cell with the
largest predicted ΔG (same fractional sites and spring) and prints the measured difference.
"""

import json
import sys
import time

import numpy as np
import torch
import torch_sim as ts

from bench.common import threads_from_env, utc
from phasetune.free_energy.einstein import EinsteinCrystal, spring_constant_from_msd
from phasetune.free_energy.solid import average_lattice
from phasetune.free_energy.switching import LambdaPath, nonequilibrium_switching
from phasetune.potentials.eam import mendelev_ti1
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.structures import build_structure
from phasetune.units import KB_EV_PER_K

TEMPERATURE_K, TIMESTEP_FS = 1155.0, 3.0

phase, n_atoms, switching_ps, replicas = (
    sys.argv[1],
    int(sys.argv[2]),
    float(sys.argv[3]),
    int(sys.argv[4]),
)
torch.set_num_threads(threads_from_env())
lattice = {"hcp": dict(lattice_A=2.95, c_over_a=1.587), "bcc": dict(lattice_A=3.31)}[phase]
atoms = build_structure(phase, element="Ti", n_atoms=n_atoms, **lattice)
model = mendelev_ti1()
kT = KB_EV_PER_K * TEMPERATURE_K
start = time.time()


def npt(equilibration, production, stride, seed):
    frames, _ = sample_state_points(
        model,
        [StatePoint(name="npt", phase=phase, atoms=atoms, temperature_K=TEMPERATURE_K)],
        SamplerSettings(
            timestep_fs=TIMESTEP_FS,
            equilibration_steps=equilibration,
            production_steps=production,
            stride=stride,
            compressibility_per_GPa=0.02,
            thermostat="langevin",
            seed=seed,
            progress=False,
        ),
    )
    return frames


def log_strains(cells):
    return torch.log(torch.linalg.norm(cells, dim=-1)).numpy()  # [F, 3], orthogonal cells


long_frames = npt(1000, 16000, 5, 0)
strains = log_strains(long_frames.cell[:, 0].double())
if phase == "hcp":
    sigma = np.cov(strains.T)  # 3 x 3
    reference = strains.mean(0)
else:  # isotropic barostat: one volume mode
    sigma = np.array([[np.var(strains.sum(1), ddof=1)]])
    reference = np.array([strains.sum(1).mean()])
precision = np.linalg.inv(sigma)
h0, msd = average_lattice(long_frames, 0, atoms)
spring = spring_constant_from_msd(msd_A2=msd, temperature_K=TEMPERATURE_K)
short = []
for seed in range(3):
    cell = average_lattice(npt(500, 1000, 20, seed), 0, atoms)[0].cell.array
    e = np.log(np.linalg.norm(cell, axis=1))
    d = (e if phase == "hcp" else np.array([e.sum()])) - reference
    short.append((0.5 * kT * float(d @ precision @ d) / n_atoms, seed, cell))
    print(f"short NPT seed {seed}: predicted ΔG/N = {short[-1][0] * 1e3:.3f} meV/atom", flush=True)
predicted, seed, worst = max(short, key=lambda s: s[0])


def switch(cell):
    crystal = h0.copy()
    crystal.set_cell(cell, scale_atoms=True)  # same fractional sites
    state = ts.io.atoms_to_state([crystal] * replicas, device="cpu", dtype=torch.float64)
    path = LambdaPath(
        model, EinsteinCrystal(sites=state.positions, spring_eV_A2=spring), fix_center_of_mass=True
    )
    result = nonequilibrium_switching(
        path,
        state,
        temperature_K=torch.tensor(TEMPERATURE_K),
        timestep_fs=TIMESTEP_FS,
        equilibration_steps=300,
        switching_steps=round(switching_ps * 1000 / TIMESTEP_FS),
        seed=1,
    )
    w = result.delta_f.double().numpy() / n_atoms  # W_rev/N; G/N = const(V) − W_rev/N
    volume = abs(np.linalg.det(cell)) / n_atoms
    return w.mean(), w.std(ddof=1) / np.sqrt(replicas), volume


w0, e0, v0 = switch(h0.cell.array)
w1, e1, v1 = switch(worst)
# G/N = F_E/N − W_rev/N + (centre of mass, ∝ ln V)/N + P V/N with P = 0: the ln V term moves
# with the cell too
com = -kT * np.log(v1 / v0) / n_atoms
measured = -(w1 - w0) + com
print(
    json.dumps(
        {
            "utc": utc(),
            "phase": phase,
            "n_atoms": n_atoms,
            "replicas": replicas,
            "switching_ps": switching_ps,
            "short_seed": seed,
            "predicted_meV": round(predicted * 1e3, 4),
            "measured_meV": round(measured * 1e3, 4),
            "measured_error_meV": round(float(np.hypot(e0, e1)) * 1e3, 4),
            "volume_h0_A3": round(v0, 4),
            "volume_short_A3": round(v1, 4),
            "wall_s": round(time.time() - start, 1),
        }
    ),
    flush=True,
)
