"""Sampler speed with one noise stream per state point against torch-sim's one per batch.

    .venv/bin/python -m bench.noise_streams_cost [REPEATS]

LJ fcc, 8 systems × 256 atoms, 300 steps of 10 fs, one thread; prints atom-steps/s of
``sample_state_points`` with ``random_streams=batch`` and ``state_point``, alternating.
"""

import sys
import time

import torch

from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import StatePoint, sample_state_points
from phasetune.settings import SamplerSettings
from phasetune.structures import build_structure

torch.set_num_threads(1)
model = LennardJones(epsilon_eV=0.0103236, sigma_A=3.405)
crystal = build_structure("fcc", element="Ar", lattice_A=5.4, n_atoms=256)
points = [
    StatePoint(name=f"s{k}", phase="fcc", atoms=crystal, temperature_K=60.0 + k) for k in range(8)
]
steps = 300
for repeat in range(int(sys.argv[1]) if len(sys.argv) > 1 else 2):
    for streams in ("batch", "state_point"):
        settings = SamplerSettings(
            timestep_fs=10.0,
            equilibration_steps=0,
            production_steps=steps,
            stride=50,
            progress=False,
            random_streams=streams,
            check_phase=False,
        )
        start = time.perf_counter()
        sample_state_points(model, points, settings)
        wall = time.perf_counter() - start
        print(f"{streams:12s} repeat {repeat}: {8 * 256 * steps / wall:,.0f} atom-steps/s")
