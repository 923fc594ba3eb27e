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

from bench.common import threads_from_env, utc
from bench.ti1.crystal_setup import (
    TEMPERATURE_K,
    TIMESTEP_FS,
    crystal,
    npt_frames,
    sites_and_spring,
    switching_batch,
)
from phasetune.free_energy.switching import nonequilibrium_switching
from phasetune.potentials.eam import mendelev_ti1
from phasetune.thermo.bar import bennett_acceptance_ratio
from phasetune.units import KB_EV_PER_K

phase, n_atoms, replicas, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lengths_ps = [float(x) for x in sys.argv[5:]]
torch.set_num_threads(threads_from_env())
atoms = crystal(phase, n_atoms)
model = mendelev_ti1()
kT = KB_EV_PER_K * TEMPERATURE_K
start = time.time()
sites, spring = sites_and_spring(npt_frames(model, atoms, phase, seed=seed), atoms)
n = len(atoms)
for length in lengths_ps:
    state, path = switching_batch(model, sites, spring, replicas)
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
