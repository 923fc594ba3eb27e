"""Forward and backward dissipation of Ti1 Frenkel–Ladd switching, and three estimators of W_rev.

    .venv/bin/python -m bench.ti1.switching_asymmetry PHASE N_ATOMS REPLICAS SEED PS [PS ...]

One NPT run (``preset=quick``'s: 3 fs, 500 + 1,000 steps) sets the sites and k = 3k_BT/⟨u²⟩;
then REPLICAS copies switch EAM → springs → EAM for each switching length PS (ps), 300 steps
of equilibration at each end, as :func:`~phasetune.free_energy.solid.solid_free_energy`.
Per length, in meV/atom (W_rev = F_E^CM − F^CM, the crystal's part of G enters as −W_rev/N):

* ``mean``: (⟨W_fwd⟩ − ⟨W_bwd⟩)/2, the estimator phasetune uses; exact for symmetric
  dissipation, biased by (W_d,fwd − W_d,bwd)/2 otherwise;
* ``gauss``: mean − (σ²_fwd − σ²_bwd)/(4 k_BT), the Gaussian (linear-response) estimate of
  each direction's dissipation, W_d = σ²/(2 k_BT), removed;
* ``bar``: Bennett/Crooks maximum likelihood from the works (Shirts et al. 2003), exact at any
  switching speed given enough overlap of the two work distributions;
* the dissipation of each direction from its variance, and the mean dissipation.

A bias ∝ 1/t_s in ``mean`` that ``bar`` and ``gauss`` do not show is asymmetric dissipation.
"""

import json
import math
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
from phasetune.thermo.bar import bennett_acceptance_ratio
from phasetune.units import KB_EV_PER_K

TEMPERATURE_K, TIMESTEP_FS = 1155.0, 3.0

phase, n_atoms, replicas, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lengths_ps = [float(x) for x in sys.argv[5:]]
torch.set_num_threads(threads_from_env())
lattice = {"hcp": dict(lattice_A=2.95, c_over_a=1.587), "bcc": dict(lattice_A=3.31)}[phase]
atoms = build_structure(phase, element="Ti", n_atoms=n_atoms, **lattice)
model = mendelev_ti1()
kT = KB_EV_PER_K * TEMPERATURE_K
start = time.time()
frames, _ = sample_state_points(
    model,
    [StatePoint(name="npt", phase=phase, atoms=atoms, temperature_K=TEMPERATURE_K)],
    SamplerSettings(
        timestep_fs=TIMESTEP_FS,
        equilibration_steps=500,
        production_steps=1000,
        stride=20,
        compressibility_per_GPa=0.02,
        thermostat="langevin",
        seed=seed,
        progress=False,
    ),
)
sites, msd = average_lattice(frames, 0, atoms)
spring = spring_constant_from_msd(msd_A2=msd, temperature_K=TEMPERATURE_K)
n = len(atoms)
for length in lengths_ps:
    state = ts.io.atoms_to_state([sites] * replicas, device="cpu", dtype=torch.float64)
    path = LambdaPath(
        model, EinsteinCrystal(sites=state.positions, spring_eV_A2=spring), fix_center_of_mass=True
    )
    t0 = time.time()
    result = nonequilibrium_switching(
        path,
        state,
        temperature_K=torch.tensor(TEMPERATURE_K),
        timestep_fs=TIMESTEP_FS,
        equilibration_steps=300,
        switching_steps=round(length * 1000 / TIMESTEP_FS),
        seed=seed + 1,
    )
    wf = result.work_forward.double().numpy()
    wb = result.work_backward.double().numpy()
    mean = 0.5 * (wf.mean() - wb.mean())
    mean_error = 0.5 * math.sqrt(wf.var(ddof=1) / replicas + wb.var(ddof=1) / replicas)
    var_f, var_b = wf.var(ddof=1), wb.var(ddof=1)
    gauss = mean - (var_f - var_b) / (4 * kT)
    bar = bennett_acceptance_ratio(torch.tensor(wf), torch.tensor(wb), kT)
    row = {
        "utc": utc(),
        "phase": phase,
        "n_atoms": n,
        "replicas": replicas,
        "seed": seed,
        "switching_ps": length,
        "spring_eV_A2": round(spring, 4),
        "mean_meV": 1e3 * mean / n,
        "mean_error_meV": 1e3 * mean_error / n,
        "gauss_meV": 1e3 * gauss / n,
        "bar_meV": 1e3 * float(bar.delta_f) / n,
        "bar_error_meV": 1e3 * float(bar.std_error) / n,
        "dissipation_meV": 1e3 * 0.5 * (wf.mean() + wb.mean()) / n,
        "dissipation_fwd_from_variance_meV": 1e3 * var_f / (2 * kT) / n,
        "dissipation_bwd_from_variance_meV": 1e3 * var_b / (2 * kT) / n,
        "dissipation_kT": 0.5 * (wf.mean() + wb.mean()) / kT,
        "work_forward_eV": np.round(wf, 5).tolist(),
        "work_backward_eV": np.round(wb, 5).tolist(),
        "wall_s": round(time.time() - t0, 1),
    }
    print(json.dumps(row), flush=True)
print(f"total {time.time() - start:.0f} s", flush=True)
