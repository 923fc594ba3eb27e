"""Does a Frenkel–Ladd switch start from an equilibrated crystal? Ti1 at λ = 0 over time.

    .venv/bin/python -m bench.ti1.switching_start PHASE N_ATOMS STEPS [REPLICAS] [SEED]

As ``solid_free_energy`` does with ``preset=quick``'s settings (3 fs, NPT 500 + 1,000 steps,
k = 3k_BT/⟨u²⟩ on the average sites), the replicas start on the perfect average sites with
fresh momenta; then the crystal is run at λ = 0 (the EAM alone, Einstein springs only
watched) for STEPS steps, and ΔU/N = (U_E − U)/N, the integrand of the forward work, is
averaged over the replicas in windows of 100 steps. A drift after the switching's own
equilibration (300 steps in the presets) is a bias of the forward work: W_fwd reads ΔU at
small λ before the crystal has relaxed.
"""

import json
import sys
import time

import torch

from bench.common import threads_from_env
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

WINDOW = 100

phase, n_atoms, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
replicas = int(sys.argv[4]) if len(sys.argv) > 4 else 8
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
torch.set_num_threads(threads_from_env())
atoms = crystal(phase, n_atoms)
model = mendelev_ti1()
start = time.time()
sites, spring = sites_and_spring(npt_frames(model, atoms, phase, seed=seed), atoms)
state, path = switching_batch(model, sites, spring, replicas)

# nonequilibrium_switching's own dynamics, run at λ = 0 with ΔU read after every step:
# one "switch" of STEPS steps from 0 to 0 (a constant schedule) records nothing, so patch the
# path to keep every ΔU it computes.
trace = []
forward = path.forward


def recording_forward(state, **kwargs):
    out = forward(state, **kwargs)
    trace.append(path.delta_u.clone())
    return out


path.forward = recording_forward
nonequilibrium_switching(
    path,
    state,
    temperature_K=torch.tensor(TEMPERATURE_K),
    timestep_fs=TIMESTEP_FS,
    equilibration_steps=steps,
    switching_steps=1,
    seed=seed + 1,
)
du = torch.stack(trace[1 : steps + 1]) / len(atoms)  # [steps, replicas], eV/atom at λ = 0
windows = du[: steps // WINDOW * WINDOW].reshape(-1, WINDOW, replicas).mean(1)  # [w, R]
row = {
    "phase": phase,
    "n_atoms": len(atoms),
    "replicas": replicas,
    "seed": seed,
    "spring_eV_A2": spring,
    "window_ps": WINDOW * TIMESTEP_FS / 1000,
    "delta_u_meV_per_atom": (windows.mean(1) * 1e3).tolist(),
    "delta_u_error_meV": (windows.std(1) / replicas**0.5 * 1e3).tolist(),
    "wall_s": round(time.time() - start, 1),
}
print(json.dumps(row), flush=True)
