"""Frenkel–Ladd G/N of Ti1 hcp or bcc at 1155 K, 0 GPa: switching length and box size studies.

    .venv/bin/python -m bench.ti1.frenkel_ladd_convergence PHASE N_ATOMS SWITCHING_PS [SEED]

The settings are ``preset=quick``'s (3 fs, 4 replicas, 500 + 1,000 NPT steps, 300 steps of
equilibration at each end) except the switching length; ``n_atoms`` as in the pair configs
(hcp c/a 1.587). No finite-size correction is applied (Ti1 bcc has none), so G/N is the raw
N-atom value. One JSON line per run goes to stdout and to ``frenkel_ladd_convergence.jsonl``.
"""

import json
import sys
import time

import torch

from bench.common import threads_from_env
from phasetune.free_energy.solid import FrenkelLaddSettings, solid_free_energy
from phasetune.potentials.eam import mendelev_ti1
from phasetune.structures import build_structure

TEMPERATURE_K, TIMESTEP_FS = 1155.0, 3.0

phase, n_atoms, switching_ps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
torch.set_num_threads(threads_from_env())
lattice = {"hcp": dict(lattice_A=2.95, c_over_a=1.587), "bcc": dict(lattice_A=3.31)}[phase]
atoms = build_structure(phase, element="Ti", n_atoms=n_atoms, **lattice)
settings = FrenkelLaddSettings(
    timestep_fs=TIMESTEP_FS,
    npt_equilibration_steps=500,
    npt_production_steps=1000,
    switching_equilibration_steps=300,
    switching_steps=round(switching_ps * 1000 / TIMESTEP_FS),
    n_replicas=4,
    compressibility_per_GPa=0.02,
    seed=seed,
    progress=False,
    finite_size_correction="none",
)
start = time.time()
result = solid_free_energy(
    mendelev_ti1(), atoms, phase=phase, temperature_K=TEMPERATURE_K, settings=settings
)
row = {
    "phase": phase,
    "n_atoms": len(atoms),
    "switching_ps": switching_ps,
    "seed": seed,
    "g_eV_per_atom": result.g_eV_per_atom,
    "g_error_eV": result.g_error_eV,
    "dissipation_eV_per_atom": float(result.dissipation_eV.mean()) / result.n_atoms,
    "work_reversible_eV_per_atom": (result.work_reversible_eV / result.n_atoms).tolist(),
    "volume_A3_per_atom": result.volume_A3_per_atom,
    "wall_s": round(time.time() - start, 1),
}
print(result.describe())
print(json.dumps(row), flush=True)
with open("frenkel_ladd_convergence.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
